#!/usr/bin/env bash
# Boot kiln's default guest (`make guest`) under QEMU microvm with TCG, as a
# reference that the guest itself is sound: it must print
# `kiln-guest: init ready` and, with kiln.test=reboot, end QEMU by itself.
#
# reboot=k is the mode kiln's guests use (a keyboard-controller reset; the
# triple fault of reboot=t cannot be emulated on PVM hosts). microvm has no
# i8042, so the command line (tests/lib/qemu.sh) adds one: without it the
# kernel's reset writes go nowhere and it only ends QEMU ~1.4 s later
# through its fallback reboot methods.
#
# Usage: tests/linux/qemu-boot.sh   (from anywhere; SKIP when QEMU or the
# guest is missing)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=tests/lib/qemu.sh
. tests/lib/qemu.sh

marker=$QEMU_MARKER
timeout_s=60
name="boot-to-init-and-reboot"

qemu_tier qemu-boot
qemu_prereqs
qemu_guest

log=$T/console.log
# stdin from /dev/null: QEMU must not take over the terminal.
start=$(now_ms)
qemu_microvm "kiln.test=reboot" -serial stdio
qemu_start "$timeout_s" /dev/null "$log"

# Poll the console log to time the marker; QEMU ends on the guest's reboot.
marker_ms=
while qemu_running; do
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
else
	not_ok "$name" "$reason"
	echo "# last console lines:"
	tail -n 30 "$log" | sed 's/^/#   /'
fi
finish
