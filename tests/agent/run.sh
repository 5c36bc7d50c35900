#!/usr/bin/env bash
# Agent tier: builds the guest agent natively (static, exactly as for the
# guest) and tests/agent/agent_client_test.c against $BUILD/libkiln.a, runs
# the agent on this host with --unix and drives it through the host client
# library. Prints "ok - " / "not ok - " lines and the exec round-trip timing
# line. Needs no KVM.
#   AGENT_SAN=1        test an ASan/UBSan build of the agent instead
#   AGENT_BENCH_N=200  execs for the timing line
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=tests/lib/harness.sh
. tests/lib/harness.sh

T=$(mktemp -d)
P=
trap 'rm -rf "$T" ${P:+"$P"}' EXIT
WARN="-Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes"

if ! make -s -j1 -f guest/agent/agent.mk BUILD="$BUILD" >"$T/build.log" 2>&1; then
	fail "agent builds (static)" "$(tail -5 "$T/build.log")"
	exit 0
fi
AGENT=$BUILD/guest-agent/kiln-agent
if ! file "$AGENT" 2>/dev/null | grep -q 'statically linked'; then
	fail "agent builds (static)" "$AGENT is not statically linked"
else
	pass "agent builds (static, $(stat -c %s "$AGENT") bytes)"
fi
if [ "${AGENT_SAN:-0}" = 1 ]; then
	AGENT=$BUILD/guest-agent/kiln-agent-san
	# shellcheck disable=SC2086
	cc -std=c11 -D_GNU_SOURCE -O1 -g $WARN -Iinclude \
		-fsanitize=address,undefined -fno-sanitize-recover=all \
		-o "$AGENT" guest/agent/kiln-agent.c src/agent/codec.c || {
		fail "agent builds (ASan/UBSan)" "compile error"
		exit 0
	}
fi

if ! make -s -j1 "$BUILD/libkiln-internal.a" >"$T/build.log" 2>&1; then
	fail "agent client test builds" "libkiln-internal.a: $(tail -5 "$T/build.log")"
	exit 0
fi
mkdir -p "$BUILD/tests"
# shellcheck disable=SC2086
if ! cc -std=c11 -D_GNU_SOURCE -O2 -g $WARN -Iinclude -Isrc \
	-o "$BUILD/tests/agent_client_test" tests/agent/agent_client_test.c \
	"$BUILD/libkiln-internal.a" -pthread -lslirp -lz -lcurl -luring 2>"$T/build.log"; then
	fail "agent client test builds" "$(tail -5 "$T/build.log")"
	exit 0
fi

timeout -k 5 "${KILN_TEST_LIMIT:-300}" "$BUILD/tests/agent_client_test" \
	"$AGENT" "$T" | tee "$T/results"
st=${PIPESTATUS[0]}
if [ "$st" -ne 0 ] && ! grep -q '^not ok - ' "$T/results"; then
	fail "agent client test" "exited $st"
fi
if [ "$st" -ne 0 ] || grep -q '^not ok - ' "$T/results" ||
	grep -qE 'runtime error|Sanitizer' "$T/agent.log" 2>/dev/null; then
	echo "--- agent log (last 30 lines)"
	tail -n 30 "$T/agent.log" 2>/dev/null
fi
# PID 1 duties (mounts, hostname, lo, reaping) in new namespaces. The work
# dir is outside /tmp and /run, which the agent mounts over there.
if unshare -Urmpfun --mount-proc --kill-child true 2>/dev/null; then
	mkdir -p "$BUILD"
	base=$(cd "$BUILD" && pwd)
	# a checkout under /tmp (CI clones) would be hidden by the agent's mounts
	case "$base/" in /tmp/* | /run/* | /dev/* | /proc/* | /sys/*) base=/var/tmp ;; esac
	P=$(mktemp -d -p "$base" agent-pid1.XXXXXX)
	timeout -k 5 60 "$BUILD/tests/agent_client_test" --pid1 "$AGENT" "$P" |
		tee "$T/results-pid1"
	st=${PIPESTATUS[0]}
	if [ "$st" -ne 0 ] || grep -q '^not ok - ' "$T/results-pid1"; then
		echo "--- agent log, PID 1 run"
		tail -n 30 "$P/agent.log"
		grep -q '^not ok - ' "$T/results-pid1" || fail "agent as PID 1" "test exited early"
	fi
	cat "$P/agent.log" >>"$T/agent.log"
	rm -rf "$P"
else
	skip "agent as PID 1 (namespaces)" "unshare -Urmpfun is not permitted here"
fi

if grep -qE 'runtime error|Sanitizer' "$T/agent.log" 2>/dev/null; then
	fail "agent ran clean under the sanitizers" "see the agent log above"
elif [ "${AGENT_SAN:-0}" = 1 ]; then
	pass "agent ran clean under the sanitizers"
fi
exit 0
