#!/usr/bin/env bash
# KVM tier: kiln boots the project's tiny guests (tests/guests/) on the real
# /dev/kvm: both boot protocols checked from inside the guest, SMP, and
# misbehaving guests that must end cleanly with the right outcome.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/harness.sh
# kiln's own vCPUs on /dev/kvm, never the emulating engine (tests/cli/accel.sh
# and the sandbox tiers cover engine selection)
export KILN_ACCEL=kvm

if [ ! -e /dev/kvm ]; then
	skip "kvm tier" "/dev/kvm is missing"
	exit 0
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export KILN_TEST_LIMIT=60

# The e820 map kiln promises for M MiB (M <= 3072), as the guests print it.
expected_e820() {
	printf 'E820 0x0 0x9fc00 0x1\nE820 0x9fc00 0x60400 0x2\nE820 0x100000 0x%x 0x1\n' $(($1 * 1048576 - 1048576))
}

head -c 3000 /dev/urandom >"$T/initrd"
initrd_sum=$("$BUILD/tests/fnv1a" "$T/initrd")

bootcheck() {
	local proto=$1 img=$2 name="boot protocol ($1)"
	run_kiln "$T/out" "$T/err" -- boot --kernel "$img" --initrd "$T/initrd" \
		--memory 64 --debug-exit --cmdline "kiln.test=bootcheck foo=bar"
	tr -d '\r' <"$T/out" >"$T/o"
	local why=""
	[ "$rc" -eq 0 ] || why="exit $rc"
	grep -qx "BOOT proto=$proto" "$T/o" || why="$why; no BOOT proto=$proto"
	grep -qx "CMDLINE $KILN_BASE_CMDLINE $KILN_DEVICES_CMDLINE kiln.test=bootcheck foo=bar" "$T/o" || why="$why; cmdline differs"
	[ "$(grep '^E820 ' "$T/o")" = "$(expected_e820 64)" ] || why="$why; e820 differs"
	grep -qE "^INITRD 0x[0-9a-f]+ 0xbb8 $initrd_sum\$" "$T/o" || why="$why; initrd bytes differ"
	grep -qx "RESULT PASS" "$T/o" || why="$why; guest checks: $(grep ^FAIL "$T/o" | tr '\n' ' ')"
	if [ -z "$why" ]; then pass "$name"; else fail "$name" "$why; stderr: $(head -c 300 "$T/err")"; fi
}
bootcheck bzimage "$GUESTS/bootcheck.bzimage"
bootcheck pvh "$GUESTS/bootcheck.elf"

# no initrd: the guest must see none
run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/bootcheck.elf" --memory 32 --debug-exit
expect "boot without initrd" "exit $rc / $(tr -d '\r' <"$T/out" | grep -E '^(INITRD|FAIL)')" \
	bash -c "[ $rc -eq 0 ] && tr -d '\r' <'$T/out' | grep -qx 'INITRD none'"

# console to a file instead of stdout
run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/bootcheck.bzimage" --debug-exit --console-log "$T/console.log"
expect "console log file" "exit $rc, stdout $(wc -c <"$T/out") bytes" \
	bash -c "[ $rc -eq 0 ] && [ ! -s '$T/out' ] && grep -q 'RESULT PASS' '$T/console.log'"

run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/smp.bzimage" --cpus 2 --debug-exit
expect "two vCPUs (MP table, INIT/SIPI)" "exit $rc: $(tr -d '\r' <"$T/out" | tail -3 | tr '\n' ' ')" \
	bash -c "[ $rc -eq 0 ] && tr -d '\r' <'$T/out' | grep -qx 'SMP cpus=2 ap=yes'"

run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/badio.bzimage" --debug-exit
expect "unassigned ports and MMIO read all-ones" "exit $rc: $(tr -d '\r' <"$T/out" | grep -E 'FAIL|BADIO' | tr '\n' ' ')" \
	bash -c "[ $rc -eq 0 ] && tr -d '\r' <'$T/out' | grep -qx 'BADIO ok'"

run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/triplefault.bzimage"
expect "triple fault ends the VM" "exit $rc: $(cat "$T/err")" \
	bash -c "[ $rc -eq 1 ] && grep -q 'triple-fault: guest triple fault (shutdown) on vCPU 0 at RIP 0x' '$T/err'"

run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/clihlt.bzimage" -v
expect "cli;hlt is detected as halted" "exit $rc: $(cat "$T/err")" \
	bash -c "[ $rc -eq 0 ] && grep -q 'halt: guest halted' '$T/err' && grep -q 'CLIHLT now' '$T/out'"

run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/reset.bzimage" -v
expect "i8042 reset ends the VM" "exit $rc: $(cat "$T/err")" \
	bash -c "[ $rc -eq 0 ] && grep -q 'reset: guest reset' '$T/err' && grep -q 'RESET now' '$T/out'"

start=$(date +%s)
run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/spin.bzimage" --timeout 2
took=$(($(date +%s) - start))
expect "silent spinning guest hits --timeout" "exit $rc after ${took}s: $(cat "$T/err")" \
	bash -c "[ $rc -eq 124 ] && [ $took -lt 10 ] && grep -q 'timeout: timed out after 2.000 s' '$T/err'"

# console input: bytes from stdin reach the guest's UART
rc=0
printf 'hello kiln\nq' | timeout -k 5 60 "$KILN" boot --kernel "$GUESTS/echo.bzimage" --debug-exit \
	>"$T/out" 2>"$T/err" || rc=$?
expect "console input from stdin" "exit $rc: $(head -c 200 "$T/out")" \
	bash -c "[ $rc -eq 0 ] && grep -q 'hello kiln' '$T/out' && grep -q 'ECHO bye' '$T/out'"

# console output to a reader that never reads: the guest's output beyond
# what the pipe holds goes to kiln's ring, the vCPU never waits for it, and
# what is left at the end is dropped with a warning (before: the vCPU hung
# in write() and the VM never ended)
mkfifo "$T/stalled"
(exec 3<"$T/stalled"; sleep 60) &
holder=$!
{ head -c 70000 /dev/zero | tr '\0' a; printf q; } >"$T/bulk"
rc=0
timeout -k 5 40 "$KILN" boot --kernel "$GUESTS/echo.bzimage" --debug-exit \
	<"$T/bulk" >"$T/stalled" 2>"$T/err" || rc=$?
kill "$holder" 2>/dev/null
expect "console output to a stalled reader never blocks a vCPU" \
	"exit $rc: $(grep -v PVM "$T/err" | head -c 300)" \
	bash -c "[ $rc -eq 0 ] && grep -q 'bytes of guest output were dropped' '$T/err'"

# several VMs in one process (no global state), through the library API
if [ -x "$BUILD/tests/multi_vm" ]; then
	rc=0
	timeout -k 5 60 "$BUILD/tests/multi_vm" "$GUESTS/exit0.elf" >"$T/out" 2>&1 || rc=$?
	expect "four VMs in one process" "exit $rc: $(tail -5 "$T/out")" [ "$rc" -eq 0 ]
fi

# pause/resume against the prompt guest (it polls its UART: IN exits)
if [ -x "$BUILD/tests/pause_resume" ]; then
	rc=0
	timeout -k 5 120 "$BUILD/tests/pause_resume" "$GUESTS/prompt.bzimage" >"$T/out" 2>"$T/err" || rc=$?
	cat "$T/out"
	if [ "$rc" -ne 0 ] && ! grep -q '^not ok' "$T/out"; then
		fail "pause/resume" "exit $rc: $(head -c 300 "$T/err")"
	fi
fi

# snapshots against the prompt guest: snapshot a running VM, clones here
# (one eager), every refusal; then a restore in a new process
if [ -x "$BUILD/tests/snapshot_check" ]; then
	rc=0
	timeout -k 5 120 "$BUILD/tests/snapshot_check" "$GUESTS/prompt.bzimage" "$T/snap" >"$T/out" 2>"$T/err" || rc=$?
	cat "$T/out"
	if [ "$rc" -ne 0 ] && ! grep -q '^not ok' "$T/out"; then
		fail "snapshot" "exit $rc: $(head -c 300 "$T/err")"
	fi
	rc=0
	timeout -k 5 60 "$BUILD/tests/snapshot_check" --restore "$T/snap" >"$T/out" 2>"$T/err" || rc=$?
	cat "$T/out"
	if [ "$rc" -ne 0 ] && ! grep -q '^not ok' "$T/out"; then
		fail "snapshot restore in a new process" "exit $rc: $(head -c 300 "$T/err")"
	fi
	# the same with two vCPUs: the AP waits for its SIPI across it
	rc=0
	SNAPSHOT_CHECK_CPUS=2 timeout -k 5 120 "$BUILD/tests/snapshot_check" "$GUESTS/prompt.bzimage" "$T/snap2cpu" \
		>"$T/out" 2>"$T/err" || rc=$?
	cat "$T/out"
	if [ "$rc" -ne 0 ] && ! grep -q '^not ok' "$T/out"; then
		fail "snapshot with 2 vCPUs" "exit $rc: $(head -c 300 "$T/err")"
	fi
	rc=0
	timeout -k 5 60 "$BUILD/tests/snapshot_check" --pool "$T/snap" >"$T/out" 2>"$T/err" || rc=$?
	cat "$T/out"
	if [ "$rc" -ne 0 ] && ! grep -q '^not ok' "$T/out"; then
		fail "snapshot pool" "exit $rc: $(head -c 300 "$T/err")"
	fi
	# a vsock driver: its clone gets TRANSPORT_RESET, the original not
	rc=0
	timeout -k 5 60 "$BUILD/tests/snapshot_check" --vsock "$GUESTS/vsockreset.bzimage" "$T/snapvs" \
		>"$T/out" 2>"$T/err" || rc=$?
	cat "$T/out"
	if [ "$rc" -ne 0 ] && ! grep -q '^not ok' "$T/out"; then
		fail "snapshot of a vsock guest" "exit $rc: $(head -c 300 "$T/err")"
	fi
	# the snapcheck guest mid-run: nonce, counters, LAPIC and PIT
	# interrupts, virtio-console output and disk reads across it
	truncate -s 1M "$T/snapdisk.img"
	rc=0
	timeout -k 5 120 "$BUILD/tests/snapshot_check" --rounds "$GUESTS/snapcheck.bzimage" "$T/snapdisk.img" "$T/snap2" \
		>"$T/out" 2>"$T/err" || rc=$?
	cat "$T/out"
	if [ "$rc" -ne 0 ] && ! grep -q '^not ok' "$T/out"; then
		fail "snapshot of the snapcheck guest" "exit $rc: $(head -c 300 "$T/err")"
	fi
fi

# console API: wait_for / exec against a tiny prompt guest
if [ -x "$BUILD/tests/console_api" ]; then
	rc=0
	timeout -k 5 90 "$BUILD/tests/console_api" "$GUESTS/prompt.bzimage" >"$T/out" 2>"$T/err" || rc=$?
	cat "$T/out"
	if [ "$rc" -ne 0 ] && ! grep -q '^not ok' "$T/out"; then
		fail "console api" "exit $rc: $(head -c 300 "$T/err")"
	fi
fi
