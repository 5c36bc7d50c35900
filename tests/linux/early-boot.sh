#!/usr/bin/env bash
# Linux early-boot tier (every host): kiln boots the project's guest kernel,
# as PVH vmlinux and as bzImage, with earlyprintk, and checks the kernel's
# own early log against what kiln set up: cmdline, e820 map, MP table CPU
# count, KVM CPUID leaves (hypervisor, kvm-clock) and IOAPIC routing.
# On a PVM host the kernel then dies in KVM's emulator; kiln must end that
# run cleanly, naming the KVM internal error and the guest RIP. Elsewhere the
# guest boots on to /init and reboots (exit 0).
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/harness.sh
# kiln's own vCPUs on /dev/kvm, never the emulating engine (tests/cli/accel.sh
# and the sandbox tiers cover engine selection)
export KILN_ACCEL=kvm

if [ ! -e /dev/kvm ]; then
	skip "linux early boot" "/dev/kvm is missing"
	exit 0
fi
GUEST="$BUILD/guest"
if [ ! -f "$GUEST/vmlinux" ] || [ ! -f "$GUEST/bzImage" ]; then
	scripts/build-guest.sh "$GUEST" || { fail "linux early boot" "guest kernel build failed"; exit 0; }
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export KILN_TEST_LIMIT=240
CPUS=2
MEM=256
CMDLINE="$KILN_BASE_CMDLINE $KILN_DEVICES_CMDLINE earlyprintk=serial kiln.test=reboot"
blocker=$(linux_on_kvm_blocker)

early_boot() {
	local fmt=$1 kernel=$2 o="$T/$1.out" why=""
	run_kiln "$o.raw" "$T/$fmt.err" -- boot --kernel "$kernel" --initrd "$GUEST/initramfs.cpio.gz" \
		--cpus $CPUS --memory $MEM --cmdline "earlyprintk=serial kiln.test=reboot" --timeout 200
	tr -d '\r' <"$o.raw" >"$o"
	grep -qx "Command line: $CMDLINE" "$o" || why="$why; Command line differs"
	want=$(printf 'BIOS-e820: [mem 0x%016x-0x%016x] usable\nBIOS-e820: [mem 0x%016x-0x%016x] reserved\nBIOS-e820: [mem 0x%016x-0x%016x] usable' \
		0 $((0x9fc00 - 1)) $((0x9fc00)) $((0x100000 - 1)) $((0x100000)) $((MEM * 1048576 - 1)))
	[ "$(grep '^BIOS-e820:' "$o")" = "$want" ] || why="$why; e820 differs: $(grep '^BIOS-e820:' "$o" | tr '\n' ' ')"
	grep -qx "Processors: $CPUS" "$o" || why="$why; no 'Processors: $CPUS'"
	grep -q "smpboot: Allowing $CPUS CPUs" "$o" || why="$why; no 'Allowing $CPUS CPUs'"
	grep -q "found SMP MP-table at \[mem 0x0009fc00" "$o" || why="$why; MP table not found"
	grep -qx "Hypervisor detected: KVM" "$o" || why="$why; no 'Hypervisor detected: KVM'"
	grep -q "kvm-clock: Using msrs" "$o" || why="$why; kvm-clock not used"
	grep -q "APIC: Switch to symmetric I/O mode" "$o" || why="$why; no IOAPIC switch"
	if [ -n "$blocker" ]; then
		grep -qE "internal-error: KVM internal error on vCPU [0-9]+: emulation failure \(suberror 1\) at guest RIP 0x[0-9a-f]+" \
			"$T/$fmt.err" && [ "$rc" -eq 1 ] || why="$why; expected a clean KVM internal error exit, got exit $rc: $(tail -c 300 "$T/$fmt.err")"
	else
		[ "$rc" -eq 0 ] && grep -q "kiln-guest: init ready" "$o" || why="$why; exit $rc, /init not reached"
	fi
	if [ -z "$why" ]; then pass "linux early boot ($fmt)"; else fail "linux early boot ($fmt)" "${why#; }"; fi
}
early_boot pvh "$GUEST/vmlinux"
early_boot bzimage "$GUEST/bzImage"
