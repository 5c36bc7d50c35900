#!/usr/bin/env bash
# Linux tier for sandboxes on kiln itself: `kiln run`, the named-sandbox
# commands (start, exec, cp, ps, stop) and shares mounted by the agent.
#
# Where KVM cannot run Linux (no /dev/kvm, or PVM): `kiln run/start
# --accel kvm` fail with 125 and a reason, never fall back, leave nothing.
# On whichever engine `--accel auto` picks (KVM with hardware
# virtualization, else QEMU TCG): the suite below, each line naming the
# engine, and the benchmark lines of bench/sandbox.sh. Without any engine
# each prints one SKIP line with the reason.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/harness.sh

T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-sandbox.XXXXXX")
export XDG_RUNTIME_DIR=$T/run
mkdir -m 0700 "$XDG_RUNTIME_DIR"
# shellcheck disable=SC2317 # called from the trap
cleanup() {
	"$KILN" stop --grace 1 t1 >/dev/null 2>&1
	rm -rf "$T"
}
trap cleanup EXIT
now_ms() { echo $(($(date +%s%N) / 1000000)); }
oneline() { tr '\n' ' ' <"$1" | cut -c1-400; }

if [ ! -f "$BUILD/guest/initramfs.cpio.gz" ]; then
	fail "sandbox prerequisites" "no default guest in $BUILD/guest (make guest)"
	exit 0
fi

. tests/lib/engine.sh

# kiln's own failure path, real wherever KVM cannot run Linux: forced onto
# KVM (never falling back), the guest cannot come up and kiln says why.
kvm_problem=$(kvm_unusable_reason)
if [ -n "$kvm_problem" ]; then
	before=$(ls -d /tmp/kiln-sandbox-* 2>/dev/null | wc -l)
	t0=$(now_ms)
	KILN_TEST_LIMIT=120 run_kiln "$T/out" "$T/err" -- run --accel kvm -- true
	t=$(($(now_ms) - t0))
	after=$(ls -d /tmp/kiln-sandbox-* 2>/dev/null | wc -l)
	if [ "$rc" = 125 ] && [ -s "$T/err" ] && ! grep -q "emulating engine" "$T/err" &&
		[ "$after" -le "$before" ]; then
		pass "kiln run --accel kvm where $kvm_problem: 125 after $t ms, with the reason, no fallback, nothing left behind"
	else
		fail "kiln run --accel kvm failure path" "exit $rc after $t ms: $(oneline "$T/err")"
	fi
	KILN_TEST_LIMIT=120 run_kiln "$T/out" "$T/err" -- start --accel kvm --name t1
	if [ "$rc" = 125 ] && [ -s "$T/err" ] && [ ! -e "$XDG_RUNTIME_DIR/kiln/t1" ]; then
		pass "kiln start --accel kvm where $kvm_problem: 125, no state left"
	else
		fail "kiln start --accel kvm failure path" "exit $rc: $(oneline "$T/err") $(ls -R "$XDG_RUNTIME_DIR" 2>&1)"
	fi
fi

ENGINE=$(engine_here)
if [ -z "$ENGINE" ]; then
	why=$(engine_none_reason)
	skip "kiln run (uname -a, exit 3, signals, env, cwd, stdin, 10 MiB stdout, timeout, copy-in/out)" "$why"
	skip "kiln run --share DIR:data -- ls /mnt/data" "$why"
	skip "kiln start/exec/cp/ps/stop" "$why"
	skip "bench: kiln run -- true end to end; agent exec overhead" "$why"
	exit 0
fi
E=" [$ENGINE]"
KILN_TEST_LIMIT=120 run_kiln "$T/out" "$T/err" -- run -v -- true
if [ "$rc" = 0 ] && grep -q "engine: $ENGINE" "$T/err"; then
	pass "kiln run -v says which engine runs the sandbox$E"
else
	fail "kiln run -v engine$E" "exit $rc: $(oneline "$T/err")"
fi
if [ "$ENGINE" = tcg ]; then
	run_kiln "$T/out" "$T/err" -- run -- true
	if [ "$rc" = 0 ] && [ "$(grep -c 'emulating engine' "$T/err")" = 1 ]; then
		pass "auto on a host without hardware virtualization: one line says why and that isolation rests on QEMU$E"
	else
		fail "auto fallback notice$E" "exit $rc: $(oneline "$T/err")"
	fi
fi

# --- kiln run ---
kr() { # ARGS... : kiln run with a hard limit; sets rc, out in $T/out
	KILN_TEST_LIMIT=120 run_kiln "$T/out" "$T/err" -- run "$@"
}
kr -- uname -a
if [ "$rc" = 0 ] && grep -q "^Linux kiln" "$T/out"; then pass "kiln run -- uname -a$E: $(cat "$T/out")"; else fail "kiln run uname" "exit $rc: $(oneline "$T/err")"; fi
kr -- sh -c 'exit 3'
[ "$rc" = 3 ] && pass "kiln run -- sh -c 'exit 3' -> 3$E" || fail "kiln run exit 3" "exit $rc: $(oneline "$T/err")"
kr -- sh -c 'kill -9 $$'
[ "$rc" = 137 ] && pass "kiln run: killed by SIGKILL -> 137$E" || fail "kiln run SIGKILL" "exit $rc"
kr -- no-such-command
[ "$rc" = 127 ] && pass "kiln run: not found -> 127$E" || fail "kiln run not found" "exit $rc"
kr -e FOO=bar -w /tmp -- sh -c 'echo "$FOO|$(pwd)"'
[ "$(cat "$T/out")" = "bar|/tmp" ] && pass "kiln run: env and cwd$E" || fail "kiln run env/cwd" "$(oneline "$T/out")"
kr --timeout 1 -- sleep 30
[ "$rc" = 124 ] && pass "kiln run --timeout 1 -- sleep 30 -> 124$E" || fail "kiln run timeout" "exit $rc"
head -c 10485760 /dev/urandom >"$T/big"
rc=0
got=$(timeout 120 "$KILN" run -i -- md5sum <"$T/big" 2>"$T/err") || rc=$?
[ "${got%% *}" = "$(md5sum <"$T/big" | cut -d' ' -f1)" ] && pass "kiln run -i: 10 MiB of stdin byte-exact$E" ||
	fail "kiln run stdin" "exit $rc: $(oneline "$T/err")"
rc=0
got=$(timeout 120 "$KILN" run --copy-in "$T/big:/tmp/big" -- cat /tmp/big 2>"$T/err" | md5sum) || rc=$?
[ "${got%% *}" = "$(md5sum <"$T/big" | cut -d' ' -f1)" ] && pass "kiln run --copy-in, 10 MiB of stdout byte-exact$E" ||
	fail "kiln run copy-in/stdout" "exit $rc: $(oneline "$T/err")"
kr --copy-out "/tmp/made:$T/made" -- sh -c 'echo made-in-guest >/tmp/made'
[ "$rc" = 0 ] && [ "$(cat "$T/made" 2>/dev/null)" = made-in-guest ] && pass "kiln run --copy-out$E" ||
	fail "kiln run copy-out" "exit $rc: $(oneline "$T/err")"
kr --ulimit nofile=64 --ulimit nproc=100:200 -- sh -c 'ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu'
[ "$rc" = 0 ] && [ "$(tr '\n' ' ' <"$T/out")" = "64 64 100 200 " ] && pass "kiln run --ulimit nofile=64 --ulimit nproc=100:200: the command runs under them$E" ||
	fail "kiln run --ulimit" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
mkdir -p "$T/data"
echo shared >"$T/data/file.txt"
kr --share "$T/data:data" -- ls /mnt/data
[ "$rc" = 0 ] && grep -qx file.txt "$T/out" && pass "kiln run --share DIR:data -- ls /mnt/data$E" ||
	fail "kiln run --share" "exit $rc: $(oneline "$T/err")"
kr --share "$T/data:data:ro:/srv/d" -- sh -c 'cat /srv/d/file.txt; echo x >/srv/d/new'
[ "$rc" != 0 ] && grep -qx shared "$T/out" && [ ! -e "$T/data/new" ] &&
	pass "kiln run --share DIR:TAG:ro:/GUEST: mounted there, read-only$E" || fail "kiln run ro share" "exit $rc: $(oneline "$T/err")"

# --- named sandboxes ---
KILN_TEST_LIMIT=120 run_kiln "$T/out" "$T/err" -- start --name t1 --cpus 2
if [ "$rc" = 0 ] && [ "$(cat "$T/out")" = t1 ] && [ -S "$XDG_RUNTIME_DIR/kiln/t1/vsock" ]; then
	pass "kiln start --name t1$E"
	run_kiln "$T/out" "$T/err" -- exec t1 -- sh -c 'nproc; exit 5'
	[ "$rc" = 5 ] && [ "$(cat "$T/out")" = 2 ] && pass "kiln exec t1 (status 5, 2 cpus)$E" || fail "kiln exec" "exit $rc $(oneline "$T/err")"
	head -c 5242880 /dev/urandom >"$T/f5"
	if "$KILN" cp "$T/f5" t1:/tmp/f5 && "$KILN" cp t1:/tmp/f5 "$T/f5.back" && cmp -s "$T/f5" "$T/f5.back"; then
		pass "kiln cp 5 MiB in and out$E"
	else
		fail "kiln cp" "round trip differs"
	fi
	run_kiln "$T/out" "$T/err" -- ps
	grep -q "^t1 .* $ENGINE  running" "$T/out" && pass "kiln ps lists t1 and its engine$E" || fail "kiln ps" "$(oneline "$T/out")"
	run_kiln "$T/out" "$T/err" -- stop t1
	[ "$rc" = 0 ] && [ ! -e "$XDG_RUNTIME_DIR/kiln/t1" ] && pass "kiln stop t1: clean, nothing left$E" ||
		fail "kiln stop" "exit $rc $(ls -R "$XDG_RUNTIME_DIR" 2>&1 | tr '\n' ' ')"
else
	fail "kiln start" "exit $rc: $(oneline "$T/err")"
fi

# --- bench lines (bench/sandbox.sh, also run by make bench) ---
BUILD=$BUILD bash bench/sandbox.sh | sed 's/^bench: /# bench: /'
exit 0
