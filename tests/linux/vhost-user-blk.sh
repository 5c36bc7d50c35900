#!/usr/bin/env bash
# Linux-driver tier for `kiln vhost-user`: QEMU (TCG microvm) is the
# front-end, the guest's own virtio-blk driver talks to kiln's device.
#
#   boot 1: mke2fs /dev/vda, mount, write a random file (md5 noted) and a
#           text file, sync, reboot -f (QEMU exits, kiln keeps serving)
#   boot 2: the same kiln server serves the reconnect; mount, md5 matches
#   boot 3: one more reconnect (boot straight to reboot)
#   host:   e2fsck -fn passes, debugfs reads /hello.txt, SIGTERM stops kiln
#   ro:     a new server with blk,...,ro: the guest reads the file system
#           but cannot write the disk, and the image is unchanged
#
# The guest shell is driven through the serial console (a fifo into QEMU's
# stdin, its stdout into a log): each command ends with an echo of a marker
# that only exists once the shell has expanded it. Every wait is bounded
# and everything started here is killed on exit.
#
# Prints "ok - NAME" / "not ok - NAME: why" lines and exits 0 either way;
# non-zero only when the script itself breaks.
# Usage: tests/linux/vhost-user-blk.sh   (KILN=path overrides build/kiln)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=tests/lib/qemu.sh
. tests/lib/qemu.sh

marker=$QEMU_MARKER
qemu_tier vhost-user-blk
qemu_prereqs vhost-user-blk
if ! "$KILN" vhost-user --help >/dev/null 2>&1; then
	not_ok "prerequisites" "$KILN has no working 'vhost-user' command"
	finish
fi
qemu_guest

sock=$T/vu.sock # start_server/stop_server: one server on $sock, pid in kiln_pid
img=$T/disk.img
kiln_pid=

# boot [APPEND]: QEMU as in the testing notes, the disk as vhost-user-blk,
# console on a fifo.
boot() {
	console_boot "$T/console.log" 180 "${1:-}" \
		-chardev socket,id=c0,path="$sock" -device vhost-user-blk,chardev=c0
}

# --- read-write disk, three boots on one server ---
truncate -s 64M "$img"
tier_start=$(now_ms)
if ! start_server "blk,path=$img"; then
	not_ok "server starts" "no socket at $sock; $(tail -c 300 "$T/kiln.log")"
	finish
fi
ok "server starts and listens"

text="hello from kiln vhost-user $$"
md5=
boot
if ! shell_ready; then
	not_ok "boot 1: format and write" "no shell on the console"
	console_tail
else
	why=
	gsh 60 "mke2fs /dev/vda >/dev/null" || why="mke2fs failed ($grc): $out"
	[ -z "$why" ] && { gsh 30 "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt" || why="mount failed ($grc): $out"; }
	[ -z "$why" ] && { gsh 90 "dd if=/dev/urandom of=/mnt/data.bin bs=64k count=64 2>/dev/null" || why="dd failed ($grc): $out"; }
	[ -z "$why" ] && { gsh 60 "md5sum /mnt/data.bin" || why="md5sum failed ($grc): $out"; }
	[ -z "$why" ] && md5=$(grep -oE '^[0-9a-f]{32}  /mnt/data.bin' <<<"$out" | cut -c1-32)
	[ -z "$why" ] && [ -z "$md5" ] && why="no md5 in: $out"
	[ -z "$why" ] && { gsh 30 "echo '$text' >/mnt/hello.txt && sync" || why="write/sync failed ($grc): $out"; }
	end_boot
	if [ -n "$why" ]; then
		not_ok "boot 1: format and write" "$why"
		console_tail
	elif [ "$qemu_rc" -ne 0 ]; then
		not_ok "boot 1: format and write" "QEMU exited with $qemu_rc after reboot -f"
	else
		ok "boot 1: mke2fs, mount, write 4 MiB (md5 $md5), sync"
		echo "# boot 1 took $(secs "$boot_ms") s"
	fi
fi

if ! kill -0 "$kiln_pid" 2>/dev/null; then
	not_ok "server survives the disconnect" "kiln exited; $(tail -c 300 "$T/kiln.log")"
	finish
fi

boot
if ! shell_ready; then
	not_ok "boot 2 (reconnect): data intact" "no shell on the console"
	console_tail
else
	why=
	gsh 30 "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt" || why="mount failed ($grc): $out"
	[ -z "$why" ] && { gsh 60 "md5sum /mnt/data.bin" || why="md5sum failed ($grc): $out"; }
	[ -z "$why" ] && [ -n "$md5" ] && ! grep -q "^$md5  /mnt/data.bin" <<<"$out" &&
		why="md5 mismatch: wanted $md5, got: $out"
	[ -z "$why" ] && { gsh 30 "cat /mnt/hello.txt" || why="cat failed ($grc): $out"; }
	[ -z "$why" ] && ! grep -qF "$text" <<<"$out" && why="hello.txt reads: $out"
	[ -z "$why" ] && { gsh 30 "umount /mnt && sync" || why="umount failed ($grc): $out"; }
	end_boot
	if [ -n "$why" ]; then
		not_ok "boot 2 (reconnect): data intact" "$why"
		console_tail
	elif [ -z "$md5" ]; then
		not_ok "boot 2 (reconnect): data intact" "nothing to compare (boot 1 failed)"
	elif [ "$qemu_rc" -ne 0 ]; then
		not_ok "boot 2 (reconnect): data intact" "QEMU exited with $qemu_rc"
	else
		ok "boot 2 (reconnect): md5 and hello.txt intact"
		echo "# boot 2 took $(secs "$boot_ms") s"
	fi
fi

boot "kiln.test=reboot"
if ! wait_for "$marker" 60; then
	not_ok "boot 3 (reconnect)" "no '$marker'"
	console_tail
fi
end_boot
if tr -d '\r' <"$con" | grep -q "$marker" && [ "$qemu_rc" -eq 0 ] &&
	tr -d '\r' <"$con" | grep -q 'virtio_blk virtio0: \[vda\]'; then
	ok "boot 3 (reconnect): disk seen again"
	echo "# boot 3 (to init and reboot) took $(secs "$boot_ms") s"
elif tr -d '\r' <"$con" | grep -q "$marker"; then
	not_ok "boot 3 (reconnect)" "QEMU status $qemu_rc or no vda on the console"
	console_tail
fi

if stop_server && [ "$stop_rc" -eq 0 ] && [ ! -e "$sock" ]; then
	ok "SIGTERM stops the server (exit 0, socket removed)"
else
	not_ok "SIGTERM stops the server" "exit status ${stop_rc:-none}, socket $([ -e "$sock" ] && echo left || echo gone)"
fi

if command -v e2fsck >/dev/null && command -v debugfs >/dev/null; then
	if fsck_out=$(e2fsck -fn "$img" 2>&1); then
		ok "host: e2fsck -fn is clean"
	else
		not_ok "host: e2fsck -fn" "$(tail -n 5 <<<"$fsck_out" | tr '\n' ' ')"
	fi
	if debugfs -R 'cat /hello.txt' "$img" 2>/dev/null | grep -qF "$text"; then
		ok "host: debugfs reads /hello.txt"
	else
		not_ok "host: debugfs reads /hello.txt" "$(debugfs -R 'cat /hello.txt' "$img" 2>&1 | tail -n 3 | tr '\n' ' ')"
	fi
else
	echo "SKIP: vhost-user-blk: host checks: e2fsck/debugfs not installed"
fi
echo "# read-write part took $(secs $(($(now_ms) - tier_start))) s"

# --- no acknowledged write is lost: kill -9 the VMM right after the sync ---
if start_server "blk,path=$img"; then
	boot
	if ! shell_ready; then
		not_ok "kill after sync: data on the host image" "no shell on the console"
		console_tail
	else
		why=
		gsh 30 "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt" || why="mount failed ($grc): $out"
		[ -z "$why" ] && { gsh 60 "dd if=/dev/urandom of=/mnt/flushed.bin bs=64k count=16 2>/dev/null && sync && md5sum /mnt/flushed.bin" || why="write/sync failed ($grc): $out"; }
		fmd5=$(grep -oE '^[0-9a-f]{32}  /mnt/flushed.bin' <<<"$out" | cut -c1-32)
		# the guest's sync returned: every write was acknowledged and
		# flushed; now the VMM dies without any chance to clean up
		kill -KILL "$kiln_pid" 2>/dev/null
		wait "$kiln_pid" 2>/dev/null
		kiln_pid=
		qemu_kill
		console_close
		hmd5=$(debugfs -R 'cat /flushed.bin' "$img" 2>/dev/null | md5sum | cut -c1-32)
		if [ -n "$why" ] || [ -z "$fmd5" ]; then
			not_ok "kill after sync: data on the host image" "${why:-no md5 in: $out}"
		elif [ "$fmd5" = "$hmd5" ]; then
			ok "kill -9 of the VMM after the guest's sync: flushed file intact on the host"
		else
			not_ok "kill after sync: data on the host image" "guest md5 $fmd5, host $hmd5"
		fi
	fi
	rm -f "$sock"
else
	not_ok "kill after sync: server starts" "$(tail -c 300 "$T/kiln.log")"
fi

# --- read-only disk ---
ro_start=$(now_ms)
sum_before=$(sha256sum "$img" | cut -d' ' -f1)
if ! start_server "blk,path=$img,ro"; then
	not_ok "read-only: server starts" "no socket; $(tail -c 300 "$T/kiln.log")"
	finish
fi
boot
if ! shell_ready; then
	not_ok "read-only: guest" "no shell on the console"
	console_tail
	end_boot
else
	gsh 30 "dd if=/dev/zero of=/dev/vda bs=4096 count=1 conv=fsync"
	dd_rc=$grc
	dd_out=$out
	gsh 30 "mkdir -p /mnt && mount -t ext4 -o ro /dev/vda /mnt && cat /mnt/hello.txt"
	mount_rc=$grc
	mount_out=$out
	end_boot
	if [ "$dd_rc" != 0 ] && [ "$dd_rc" != timeout ]; then
		ok "read-only: guest write to /dev/vda fails"
	else
		not_ok "read-only: guest write to /dev/vda" "dd status $dd_rc: $dd_out"
	fi
	if [ "$mount_rc" = 0 ] && grep -qF "$text" <<<"$mount_out"; then
		ok "read-only: guest mounts ro and reads hello.txt"
	else
		not_ok "read-only: guest mounts ro and reads" "status $mount_rc: $mount_out"
	fi
fi
stop_server
if [ "$(sha256sum "$img" | cut -d' ' -f1)" = "$sum_before" ]; then
	ok "read-only: image unchanged"
else
	not_ok "read-only: image unchanged" "the image changed"
fi
echo "# read-only part took $(secs $(($(now_ms) - ro_start))) s"
finish
