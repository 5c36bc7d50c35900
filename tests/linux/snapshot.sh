#!/usr/bin/env bash
# Sandbox templates: `kiln snapshot`, `kiln run/start --from`, `kiln pool
# start --from`. Snapshots need kiln's KVM engine running Linux, so the
# real suite runs where /dev/kvm has hardware virtualization:
#   a template of a started sandbox (which goes on); two clones whose agent
#   answers, whose random bytes differ and whose clock is the host's; a
#   clone named by start --from; a pool of clones; the template's memory
#   file unchanged by all of them.
# Elsewhere it prints one SKIP line for that, and checks what holds on any
# host: the refusals (a snapshot on the emulating engine, a missing or
# non-sandbox template, VM options beside --from).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/harness.sh

T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-snap.XXXXXX")
export XDG_RUNTIME_DIR=$T/run
mkdir -m 0700 "$XDG_RUNTIME_DIR"
# shellcheck disable=SC2317 # called from the trap
cleanup() {
	for n in tpl c1 tt; do "$KILN" stop --grace 1 "$n" >/dev/null 2>&1; done
	"$KILN" pool stop fp >/dev/null 2>&1
	rm -rf "$T"
}
trap cleanup EXIT
oneline() { tr '\n' ' ' <"$1" | cut -c1-400; }

if [ ! -f "$BUILD/guest/initramfs.cpio.gz" ]; then
	fail "snapshot prerequisites" "no default guest in $BUILD/guest (make guest)"
	exit 0
fi
. tests/lib/engine.sh
ENGINE=$(engine_here)

# --- refusals, on any host ---
check "run --from a missing template: 125, saying so" 125 "state: No such file" -- run --from "$T/none" -- true
check "run --from with a VM option: usage error" 2 "snapshot decides the VM \(--cpus" -- run --from "$T/none" --cpus 2 -- true
check "start --from with a VM option: usage error" 2 "snapshot decides the VM \(--memory" -- start --from "$T/none" --memory 64
check "pool start --from with a VM option: usage error" 2 "snapshot decides the VM" -- pool start --name fp --from "$T/none" --cpus 2
check "run with both --pool and --from: usage error" 2 "one or the other" -- run --pool p --from "$T/none" -- true
check "snapshot of no such sandbox: 125" 125 "no sandbox named" -- snapshot nosuch "$T/x"
check "snapshot without a directory: usage error" 2 "usage: kiln snapshot NAME DIR" -- snapshot tpl
if [ -x "$BUILD/tests/snapshot_check" ] && [ -z "$(kvm_unusable_reason | grep missing)" ] &&
	timeout 60 "$BUILD/tests/snapshot_check" "$BUILD/tests/guests/prompt.bzimage" "$T/tiny" >/dev/null 2>&1; then
	check "run --from a snapshot that is not a sandbox's: 125, saying so" 125 "not a sandbox template" -- \
		run --from "$T/tiny" -- true
fi

if [ "$ENGINE" != kvm ]; then
	why=$(linux_on_kvm_blocker)
	why=${why:-/dev/kvm is not usable}
	if [ "$ENGINE" = tcg ]; then
		KILN_TEST_LIMIT=120 run_kiln "$T/out" "$T/err" -- start --name tt
		check "snapshot of a sandbox on the emulating engine: 125, saying so, the sandbox goes on" 125 \
			"emulating engine \(tcg\), which cannot snapshot" -- snapshot tt "$T/tt"
		if ! "$KILN" exec tt -- true >/dev/null 2>&1; then
			fail "the sandbox goes on after a refused snapshot" "exec failed"
		fi
		"$KILN" stop --grace 1 tt >/dev/null 2>&1
	fi
	skip "Linux snapshot/restore of a sandbox (template, two clones: agent answers, random bytes differ, clock current; start --from; pool --from)" \
		"$why: snapshots need kiln's KVM engine running Linux"
	exit 0
fi

# --- the real suite (hardware virtualization) ---
E=" [kvm]"
KILN_TEST_LIMIT=120 run_kiln "$T/out" "$T/err" -- start --name tpl
KILN_TEST_LIMIT=120 run_kiln "$T/out" "$T/err" -- snapshot tpl "$T/tpl"
if [ "$rc" = 0 ] && [ -s "$T/tpl/state" ] && [ -s "$T/tpl/memory" ] && "$KILN" exec tpl -- true; then
	pass "kiln snapshot: a template of a started sandbox, which goes on$E"
else
	fail "kiln snapshot" "exit $rc: $(oneline "$T/err")"
fi
sum0=$(cksum <"$T/tpl/memory")
probe='head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n"; echo; date +%s'
for i in 1 2; do
	t0=$(date +%s%N)
	KILN_TEST_LIMIT=60 run_kiln "$T/c$i" "$T/e$i" -- run --from "$T/tpl" -- sh -c "$probe"
	echo "rc=$rc ms=$((($(date +%s%N) - t0) / 1000000))" >>"$T/c$i.meta"
done
r1=$(sed -n 1p "$T/c1") r2=$(sed -n 1p "$T/c2")
d1=$(sed -n 2p "$T/c1") now=$(date +%s)
if grep -q "rc=0" "$T/c1.meta" && grep -q "rc=0" "$T/c2.meta" && [ -n "$r1" ] && [ "$r1" != "$r2" ]; then
	pass "two clones (kiln run --from): the agent answers, their random bytes differ ($(cut -d' ' -f2 "$T/c1.meta") end to end)$E"
else
	fail "two clones" "$(cat "$T/c1.meta" "$T/c2.meta" | tr '\n' ' ') r1=$r1 r2=$r2 $(oneline "$T/e1")"
fi
if [ -n "$d1" ] && [ $((now - d1)) -le 10 ] && [ $((d1 - now)) -le 10 ]; then
	pass "a clone's clock is the host's, not the template's$E"
else
	fail "a clone's clock" "guest $d1, host $now"
fi
KILN_TEST_LIMIT=60 run_kiln "$T/out" "$T/err" -- start --from "$T/tpl" --name c1
if [ "$rc" = 0 ] && [ "$("$KILN" exec c1 -- hostname 2>/dev/null)" = c1 ]; then
	pass "kiln start --from --name c1: a named clone with its hostname$E"
else
	fail "kiln start --from" "exit $rc: $(oneline "$T/err")"
fi
KILN_TEST_LIMIT=60 run_kiln "$T/out" "$T/err" -- pool start --name fp --from "$T/tpl" --size 2
KILN_TEST_LIMIT=60 run_kiln "$T/out" "$T/err" -- run --pool fp -- true
if [ "$rc" = 0 ]; then
	pass "kiln pool start --from: claims are clones$E"
else
	fail "pool --from" "exit $rc: $(oneline "$T/err")"
fi
"$KILN" pool stop fp >/dev/null 2>&1
"$KILN" stop c1 tpl >/dev/null 2>&1
if [ "$(cksum <"$T/tpl/memory")" = "$sum0" ]; then
	pass "the template's memory file is unchanged by its clones"
else
	fail "template memory file" "changed"
fi
