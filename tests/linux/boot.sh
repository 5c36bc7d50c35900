#!/usr/bin/env bash
# Linux tier: kiln boots its default guest (kernel + initramfs) to /init and
# the guest reboots cleanly; ext4 disks read, written and read-only. Runs on
# whichever engine `--accel auto` picks (KVM with hardware virtualization,
# else QEMU TCG), each line naming it; SKIP only without any engine.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/harness.sh

. tests/lib/engine.sh

ENGINE=$(engine_here)
if [ -z "$ENGINE" ]; then
	why=$(engine_none_reason)
	skip "linux boot (default guest to /init, reboot)" "$why"
	skip "linux disk (--disk: ext4 read, write, sync, read-only)" "$why"
	exit 0
fi
E=" [$ENGINE]"
[ -f "$BUILD/guest/vmlinux" ] || scripts/build-guest.sh "$BUILD/guest" >/dev/null
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for fmt in vmlinux bzImage; do
	start=$(date +%s%N)
	KILN_GUEST_DIR="$BUILD/guest" run_kiln "$T/out" "$T/err" -- boot --kernel "$BUILD/guest/$fmt" \
		--initrd "$BUILD/guest/initramfs.cpio.gz" --cmdline kiln.test=reboot --timeout 60
	ms=$((($(date +%s%N) - start) / 1000000))
	if [ "$rc" -eq 0 ] && grep -q "kiln-guest: init ready" "$T/out"; then
		pass "linux boot $fmt to /init and reboot (${ms} ms)$E"
	else
		fail "linux boot $fmt" "exit $rc: $(tail -c 400 "$T/err") $(tail -c 400 "$T/out")"
	fi
done
# the default guest: no --kernel at all. A power-off (every vCPU halted
# with interrupts off) is seen by the KVM engine's halt monitor; QEMU's
# microvm without ACPI gives the emulating engine no such signal yet, so
# there the guest reboots instead.
if [ "$ENGINE" = kvm ]; then ending=poweroff; else ending=reboot; fi
run_kiln "$T/out" "$T/err" -- boot --cmdline kiln.test=$ending --timeout 60
if [ "$rc" -eq 0 ] && grep -q "kiln-guest: init ready" "$T/out"; then
	pass "kiln boot with the default guest, $ending$E"
else
	fail "kiln boot default guest" "exit $rc: $(tail -c 400 "$T/err")"
fi
[ "$ENGINE" = kvm ] || skip "kiln boot: guest power-off ends the VM$E" \
	"the emulating engine cannot see a power-off (microvm without ACPI); the guest runs until --timeout"

# --disk: the guest reads a file kiln mkimage put there, writes one, syncs;
# the host then finds it in the image; a read-only disk refuses writes.
mkdir -p "$T/tree"
echo "from the host" >"$T/tree/hello.txt"
"$KILN" mkimage "$T/tree" "$T/disk.img" --size 32
# drive_shell IMG_ARG COMMANDS: boots the default guest with the disk and
# types COMMANDS into its shell once /init is up; output in $T/out
drive_shell() {
	local disk=$1 cmds=$2
	rm -f "$T/in"
	mkfifo "$T/in"
	timeout -k 5 120 "$KILN" boot --disk "$disk" --timeout 100 <"$T/in" >"$T/out" 2>"$T/err" &
	local pid=$!
	exec 7>"$T/in"
	for _ in $(seq 600); do
		grep -q "kiln-guest: init ready" "$T/out" && break
		sleep 0.1
	done
	sleep 0.5
	printf '%s\n' "$cmds" >&7
	rc=0
	wait "$pid" || rc=$?
	exec 7>&-
}
drive_shell "$T/disk.img" "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && cat /mnt/hello.txt && echo from-the-guest >/mnt/guest.txt && sync && umount /mnt; reboot -f"
if [ "$rc" -eq 0 ] && grep -q "from the host" "$T/out" &&
	[ "$(debugfs -R 'cat /guest.txt' "$T/disk.img" 2>/dev/null)" = "from-the-guest" ] &&
	e2fsck -fn "$T/disk.img" >/dev/null 2>&1; then
	pass "linux disk on kiln: read, write, sync, fsck$E"
else
	fail "linux disk on kiln" "exit $rc: $(tail -c 400 "$T/out")"
fi
sum=$(md5sum <"$T/disk.img")
drive_shell "$T/disk.img,ro" "dd if=/dev/zero of=/dev/vda bs=512 count=1 conv=fsync && echo WRITE-\$((1+1))-WORKED; reboot -f"
if [ "$rc" -eq 0 ] && ! grep -q "WRITE-2-WORKED" "$T/out" && [ "$(md5sum <"$T/disk.img")" = "$sum" ]; then
	pass "linux disk on kiln: read-only disk refuses writes$E"
else
	fail "linux disk on kiln read-only" "exit $rc: $(tail -c 400 "$T/out")"
fi
