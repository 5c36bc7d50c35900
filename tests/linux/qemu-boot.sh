#!/usr/bin/env bash
# Boot kiln's default guest (scripts/build-guest.sh) under QEMU microvm with
# TCG, as a reference that the guest itself is sound: it must print
# `kiln-guest: init ready` and, with kiln.test=reboot, end QEMU by itself.
#
# reboot=k is the mode kiln's guests use (a keyboard-controller reset; the
# triple fault of reboot=t cannot be emulated on PVM hosts). microvm has no
# i8042, so we add one: without it the kernel's reset writes go nowhere and it
# only ends QEMU ~1.4 s later through its fallback reboot methods.
#
# Usage: tests/linux/qemu-boot.sh   (from anywhere; builds the guest if needed)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

marker="kiln-guest: init ready"
timeout_s=60
passed=0
failed=0

ok() {
	echo "ok - $1"
	passed=$((passed + 1))
}
not_ok() {
	echo "not ok - $1: $2"
	failed=$((failed + 1))
}
finish() {
	echo "qemu-boot: $passed passed, $failed failed"
	[ "$failed" -eq 0 ] || exit 1
	exit 0
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%02d' $(($1 / 1000)) $(($1 % 1000 / 10)); }

name="boot-to-init-and-reboot"

if ! guest_line=$(scripts/build-guest.sh build/guest); then
	not_ok "$name" "scripts/build-guest.sh build/guest failed"
	finish
fi
echo "# $guest_line"
if ! command -v qemu-system-x86_64 >/dev/null; then
	not_ok "$name" "qemu-system-x86_64 not found (run scripts/install-deps.sh)"
	finish
fi

log=$(mktemp "${TMPDIR:-/tmp}/kiln-qemu-boot.XXXXXX")
qemu_pid=
# shellcheck disable=SC2317 # called from the trap
cleanup() {
	if [ -n "$qemu_pid" ]; then kill "$qemu_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# stdin from /dev/null: QEMU must not take over the terminal.
start=$(now_ms)
timeout "$timeout_s" qemu-system-x86_64 \
	-M microvm,acpi=off,x-option-roms=off,rtc=on,isa-serial=on \
	-accel tcg -cpu max -m 256 \
	-nodefaults -no-user-config -nographic -no-reboot -serial stdio \
	-device i8042 \
	-kernel build/guest/vmlinux -initrd build/guest/initramfs.cpio.gz \
	-append "console=ttyS0 reboot=k panic=-1 kiln.test=reboot" \
	</dev/null >"$log" 2>&1 &
qemu_pid=$!

# Poll the console log to time the marker; QEMU ends on the guest's reboot.
marker_ms=
while kill -0 "$qemu_pid" 2>/dev/null; do
	if [ -z "$marker_ms" ] && grep -qF "$marker" "$log"; then
		marker_ms=$(($(now_ms) - start))
	fi
	sleep 0.05
done
rc=0
wait "$qemu_pid" || rc=$?
qemu_pid=
exit_ms=$(($(now_ms) - start))
if [ -z "$marker_ms" ] && grep -qF "$marker" "$log"; then
	marker_ms=$exit_ms
fi

reason=
if [ "$rc" -eq 124 ]; then
	reason="QEMU did not exit within ${timeout_s} s"
	[ -n "$marker_ms" ] || reason="$reason; no '$marker' on the console"
elif [ -z "$marker_ms" ]; then
	reason="no '$marker' on the console (QEMU exit status $rc)"
elif [ "$rc" -ne 0 ]; then
	reason="QEMU exited with status $rc"
fi

if [ -z "$reason" ]; then
	ok "$name"
	echo "# marker after $(secs "$marker_ms") s, QEMU exited after $(secs "$exit_ms") s"
	rm -f "$log"
else
	not_ok "$name" "$reason"
	echo "# last console lines ($log):"
	tail -n 30 "$log" | sed 's/^/#   /'
fi
finish
