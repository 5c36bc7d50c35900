#!/usr/bin/env bash
# Linux-driver tier for kiln's virtio-fs: QEMU (TCG microvm) is the
# vhost-user front-end, the guest's own virtiofs driver talks to
# `kiln vhost-user --device fs,dir=SHARE,tag=data`.
#
#   boot 1 (read-write share):
#     mount -t virtiofs; create, write, read, rename, unlink, mkdir/rmdir;
#     a 50 MiB host file read byte-exact in the guest (md5sum); files the
#     guest writes (random data, a 50 MiB copy) checked on the host;
#     chmod and touch -d seen on the host, a host mtime seen in the guest;
#     readdir of 10,000 host-made entries;
#     escapes: symlinks in the share (-> /, -> /etc, -> an absolute and a
#     relative path outside the share) resolve in the GUEST's namespace,
#     never the host's: markers that exist only on the host (a file
#     outside the share) or only in the guest (a file in its /etc, its
#     root listing) tell the two apart; a guest-made symlink out of the
#     share cannot be used to write on the host.
#   host: the server survives the disconnect
#   reconnects: QEMU killed with a file open on the share, then a new
#     guest on the same server mounts and reads; the server's fds (one per
#     looked-up inode) are released by the resets; SIGTERM stops it
#   boot 2 (share with ,ro): writes fail with EROFS, reads work, the host
#     directory is unchanged
#
# The guest shell is driven through the serial console as in
# vhost-user-blk.sh. Every wait is bounded and everything started here is
# killed on exit. Prints "ok - NAME" / "not ok - NAME: why" lines and exits
# 0 either way; non-zero only when the script itself breaks.
# Usage: tests/linux/vhost-user-fs.sh   (KILN=path overrides build/kiln)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=tests/lib/qemu.sh
. tests/lib/qemu.sh

qemu_tier vhost-user-fs
qemu_prereqs vhost-user-fs-device
if ! "$KILN" vhost-user --help 2>/dev/null | grep -q 'fs,dir='; then
	not_ok "prerequisites" "$KILN has no 'vhost-user --device fs'"
	finish
fi
qemu_guest

share=$T/share
outside=$T/outside
sock=$T/vu.sock # start_server/stop_server: one server on $sock, pid in kiln_pid
kiln_pid=

# with KEEP_TMP=1 the logs stay, not the big and uninteresting files
# shellcheck disable=SC2317 # called from the trap
qemu_tier_cleanup() {
	[ "${KEEP_TMP:-0}" = 1 ] && rm -rf "$share/many" "$share"/*.bin
	return 0
}

# boot: QEMU as in the testing notes, the share as vhost-user-fs-device tag
# "data"; one console log per boot.
boot_no=0
boot() {
	boot_no=$((boot_no + 1))
	console_boot "$T/console-$boot_no.log" 120 quiet \
		-chardev socket,id=c0,path="$sock" -device vhost-user-fs-device,chardev=c0,tag=data
}

# --- the share, made on the host ---
tier_start=$(now_ms)
mkdir -p "$share/many" "$outside"
text="hello from the host $$"
echo "$text" >"$share/hello.txt"
head -c 50M /dev/urandom >"$share/host50.bin"
host50_md5=$(md5sum <"$share/host50.bin" | cut -c1-32)
(cd "$share/many" && seq -f 'f%05g' 1 10000 | xargs touch)
touch -d @1000000000 "$share/hostmtime"
secret="HOST-SECRET-$$"
echo "$secret" >"$outside/host-secret"
ln -s / "$share/rootlink"
ln -s /etc "$share/escape"
ln -s "$outside" "$share/escape_abs"
ln -s ../outside "$share/escape_rel"
echo "# share prepared in $(secs $(($(now_ms) - tier_start))) s"

if ! start_server "fs,dir=$share,tag=data"; then
	not_ok "server starts" "no socket at $sock; $(tail -c 300 "$T/kiln.log")"
	finish
fi
ok "server starts and listens"

# --- boot 1: read-write share ---
boot
if ! shell_ready; then
	not_ok "boot 1" "no shell on the console"
	console_tail
	end_boot
	finish
fi
echo "# shell after $(secs $(($(now_ms) - boot_start))) s"

if gsh 30 "mkdir -p /mnt && mount -t virtiofs data /mnt && grep ' /mnt ' /proc/mounts"; then
	ok "mount -t virtiofs data /mnt ($(grep -o 'data /mnt virtiofs [^ ]*' <<<"$out"))"
else
	not_ok "mount -t virtiofs" "status $grc: $(oneline "$out")"
	console_tail
	end_boot
	finish
fi

if gsh 30 "cat /mnt/hello.txt" && grep -qF "$text" <<<"$out"; then
	ok "guest reads a host file"
else
	not_ok "guest reads a host file" "status $grc: $(oneline "$out")"
fi

gw="guest wrote this $$"
if gsh 30 "echo '$gw' >/mnt/new.txt && echo more >>/mnt/new.txt && cat /mnt/new.txt" &&
	[ "$(cat "$share/new.txt" 2>&1)" = "$gw"$'\n'"more" ] && grep -qF "$gw" <<<"$out"; then
	ok "create, write, append, read back; host sees the contents"
else
	not_ok "create/write/read" "status $grc: $(oneline "$out"); host: $(oneline "$(cat "$share/new.txt" 2>&1)")"
fi

if gsh 30 "mv /mnt/new.txt /mnt/renamed.txt && cat /mnt/renamed.txt" &&
	[ ! -e "$share/new.txt" ] && [ "$(head -n1 "$share/renamed.txt" 2>&1)" = "$gw" ]; then
	ok "rename: host sees the new name only"
else
	not_ok "rename" "status $grc: $(oneline "$out"); host: $(find "$share" -mindepth 1 -maxdepth 1 -printf '%f ')"
fi

if gsh 30 "mkdir /mnt/d && echo x >/mnt/d/f && rm /mnt/d/f /mnt/renamed.txt && rmdir /mnt/d && ls /mnt" &&
	[ ! -e "$share/renamed.txt" ] && [ ! -e "$share/d" ]; then
	ok "unlink, mkdir, rmdir: gone on the host"
else
	not_ok "unlink/mkdir/rmdir" "status $grc: $(oneline "$out"); host: $(find "$share" -mindepth 1 -maxdepth 1 -printf '%f ')"
fi

if gsh 60 "md5sum /mnt/host50.bin" && grep -q "^$host50_md5  /mnt/host50.bin" <<<"$out"; then
	ok "50 MiB host file read byte-exact in the guest ($(secs "$gsh_ms") s)"
else
	not_ok "50 MiB host file in the guest" "status $grc, host md5 $host50_md5: $(oneline "$out")"
fi

gsh 60 "dd if=/dev/urandom of=/mnt/guest.bin bs=64k count=128 2>/dev/null && md5sum /mnt/guest.bin"
gmd5=$(grep -oE '^[0-9a-f]{32}  /mnt/guest.bin' <<<"$out" | cut -c1-32)
hmd5=$(md5sum <"$share/guest.bin" 2>/dev/null | cut -c1-32)
if [ "$grc" = 0 ] && [ -n "$gmd5" ] && [ "$gmd5" = "$hmd5" ]; then
	ok "8 MiB of guest random data byte-exact on the host"
else
	not_ok "guest-written file on the host" "status $grc, guest md5 '$gmd5', host md5 '$hmd5': $(oneline "$out")"
fi

if gsh 60 "cp /mnt/host50.bin /mnt/copy50.bin && sync" &&
	[ "$(md5sum <"$share/copy50.bin" | cut -c1-32)" = "$host50_md5" ]; then
	ok "50 MiB written by the guest byte-exact on the host ($(secs "$gsh_ms") s)"
else
	not_ok "50 MiB written by the guest" "status $grc: $(oneline "$out")"
fi
rm -f "$share/copy50.bin"

if gsh 30 "echo p >/mnt/perm.txt && chmod 640 /mnt/perm.txt && stat -c %a /mnt/perm.txt" &&
	[ "$(stat -c %a "$share/perm.txt" 2>&1)" = 640 ] && grep -qx 640 <<<"$out"; then
	ok "chmod 640 in the guest: mode 640 on the host"
else
	not_ok "chmod" "status $grc: $(oneline "$out"); host mode $(stat -c %a "$share/perm.txt" 2>&1)"
fi

want=$(date -u -d '2001-02-03 04:05:06' +%s)
if gsh 30 "touch -d '2001-02-03 04:05:06' /mnt/perm.txt && stat -c %Y /mnt/perm.txt" &&
	[ "$(stat -c %Y "$share/perm.txt" 2>&1)" = "$want" ] && grep -qx "$want" <<<"$out"; then
	ok "touch -d in the guest: mtime $want on the host"
else
	not_ok "touch -d" "status $grc: $(oneline "$out"); host mtime $(stat -c %Y "$share/perm.txt" 2>&1), want $want"
fi

if gsh 30 "stat -c %Y /mnt/hostmtime" && grep -qx 1000000000 <<<"$out"; then
	ok "host mtime seen in the guest"
else
	not_ok "host mtime in the guest" "status $grc: $(oneline "$out")"
fi

if gsh 60 "ls /mnt/many | wc -l" && grep -qx '10000' <<<"$(tr -d ' ' <<<"$out")"; then
	ok "readdir of 10,000 host entries ($(secs "$gsh_ms") s)"
else
	not_ok "readdir of 10,000 entries" "status $grc: $(oneline "$out")"
fi
gsh 30 "ls /mnt/many/f00001 /mnt/many/f10000 && ! ls /mnt/many/f10001 2>/dev/null" ||
	not_ok "readdir: first and last entries" "status $grc: $(oneline "$out")"

# --- escapes: symlinks resolve in the guest, never on the host ---
gmark="guest-only-mark-$$"
gsh 30 "mkdir -p /etc && echo '$gmark' >/etc/kiln-fs-mark"
if gsh 30 "readlink /mnt/escape; cat /mnt/escape/kiln-fs-mark" &&
	grep -qx /etc <<<"$out" && grep -qF "$gmark" <<<"$out" && [ ! -e /etc/kiln-fs-mark ]; then
	ok "escape -> /etc is the guest's /etc (guest-only marker read through it)"
else
	not_ok "escape -> /etc" "status $grc: $(oneline "$out")"
fi

gsh 30 "ls / | tr '\n' ' '; echo; ls /mnt/rootlink/ | tr '\n' ' '; echo"
lists=$(grep -v '^$' <<<"$out")
if [ "$grc" = 0 ] && [ "$(sed -n 1p <<<"$lists")" = "$(sed -n 2p <<<"$lists")" ] &&
	grep -qw init <<<"$(sed -n 2p <<<"$lists")"; then
	ok "rootlink -> / lists the guest's root, not the host's"
else
	not_ok "rootlink -> /" "status $grc: $(oneline "$out")"
fi

gsh 30 "cat /mnt/escape_abs/host-secret; cat /mnt/escape_rel/host-secret; cat /mnt/../..$outside/host-secret; ls /mnt/escape_abs/ /mnt/escape_rel/"
if grep -qF "$secret" <<<"$out" || grep -q 'host-secret$' <<<"$out"; then
	not_ok "paths out of the share" "the guest read the host-only file: $(oneline "$out")"
else
	ok "symlinks and ../.. paths out of the share never reach host files"
fi

if gsh 30 "cat /mnt/../../etc/kiln-fs-mark" && grep -qF "$gmark" <<<"$out"; then
	ok "/mnt/../../etc stays in the guest"
else
	not_ok "/mnt/../../etc" "status $grc: $(oneline "$out")"
fi

pwn="pwned-$$"
gsh 30 "ln -s / /mnt/groot && echo x >/mnt/groot/tmp/$pwn && cat /tmp/$pwn; ln -s $outside /mnt/gout; echo x >/mnt/gout/$pwn; ln /etc/kiln-fs-mark /mnt/hardlink"
if [ -L "$share/groot" ] && [ "$(readlink "$share/groot")" = / ] && grep -qx x <<<"$out" &&
	[ ! -e "/tmp/$pwn" ] && [ ! -e "$outside/$pwn" ] && [ ! -e "$share/hardlink" ] &&
	[ "$(ls "$outside")" = host-secret ]; then
	ok "guest-made symlinks out of the share write only in the guest"
else
	not_ok "guest-made symlinks" "status $grc: $(oneline "$out"); outside: $(find "$outside" -mindepth 1 -maxdepth 1 -printf '%f ')"
	rm -f "/tmp/$pwn"
fi

if gsh 30 "umount /mnt"; then
	ok "umount"
else
	not_ok "umount" "status $grc: $(oneline "$out")"
fi
end_boot
if [ "$qemu_rc" -eq 0 ]; then
	ok "boot 1 ends with reboot -f"
else
	not_ok "boot 1 ends" "QEMU exited with $qemu_rc"
	console_tail
fi
echo "# boot 1 took $(secs "$boot_ms") s"

if kill -0 "$kiln_pid" 2>/dev/null; then
	ok "server survives the disconnect"
else
	not_ok "server survives the disconnect" "kiln exited; $(tail -c 300 "$T/kiln.log")"
fi

# --- reconnects: an unclean end (QEMU killed with a file open), then a new
# guest on the same server; a reset must drop the old session's inodes ---
boot
if ! shell_ready; then
	not_ok "reconnect 1" "no shell on the console"
	console_tail
else
	gsh 30 "mkdir -p /mnt && mount -t virtiofs data /mnt && exec 3</mnt/hello.txt && ls /mnt/many | wc -l"
fi
qemu_kill
console_close
boot
if ! shell_ready; then
	not_ok "reconnect 2" "no shell on the console"
	console_tail
elif gsh 30 "mkdir -p /mnt && mount -t virtiofs data /mnt && cat /mnt/hello.txt && ls /mnt/many | wc -l" &&
	grep -qF "$text" <<<"$out" && grep -qx 10000 <<<"$(tr -d ' ' <<<"$out")"; then
	ok "after QEMU was killed mid-session, a new guest mounts and reads"
else
	not_ok "reconnect after kill -9" "status $grc: $(oneline "$out")"
fi
[ -n "$qemu_pid" ] && end_boot
# the server's own fds: socket, epoll, eventfds, the share's root
nfd=
for _ in $(seq 1 20); do
	nfd=$(find "/proc/$kiln_pid/fd" -mindepth 1 2>/dev/null | wc -l)
	[ "$nfd" -lt 64 ] && break
	sleep 0.1
done
if [ -n "$nfd" ] && [ "$nfd" -lt 64 ]; then
	ok "after the disconnects the server holds $nfd fds (10,000+ lookups released)"
else
	not_ok "fds released on disconnect" "kiln holds ${nfd:-?} fds"
fi

if stop_server && [ "$stop_rc" -eq 0 ] && [ ! -e "$sock" ]; then
	ok "SIGTERM stops the server (exit 0, socket removed)"
else
	not_ok "SIGTERM stops the server" "exit status ${stop_rc:-none}, socket $([ -e "$sock" ] && echo left || echo gone)"
fi

# --- boot 2: read-only share ---
before=$(cd "$share" && find . -printf '%p %s %T@ %m\n' | sort | md5sum)
if ! start_server "fs,dir=$share,tag=data,ro"; then
	not_ok "read-only: server starts" "no socket; $(tail -c 300 "$T/kiln.log")"
	finish
fi
boot
if ! shell_ready; then
	not_ok "read-only: boot 2" "no shell on the console"
	console_tail
else
	gsh 30 "mkdir -p /mnt && mount -t virtiofs data /mnt"
	if gsh 30 "touch /mnt/x"; then
		not_ok "read-only: touch fails with EROFS" "touch succeeded"
	elif grep -qi 'read-only file system' <<<"$out"; then
		ok "read-only: touch fails with EROFS"
	else
		not_ok "read-only: touch fails with EROFS" "status $grc: $(oneline "$out")"
	fi
	gsh 30 "echo y >>/mnt/hello.txt; rm /mnt/hello.txt; mkdir /mnt/e; mv /mnt/hello.txt /mnt/h2; chmod 600 /mnt/hello.txt; touch -d '2001-01-01' /mnt/hello.txt"
	n_erofs=$(grep -ci 'read-only file system' <<<"$out")
	if [ "$n_erofs" -ge 6 ]; then
		ok "read-only: append, rm, mkdir, mv, chmod, touch -d all fail with EROFS"
	else
		not_ok "read-only: other writes" "$n_erofs of 6 EROFS: $(oneline "$out")"
	fi
	if gsh 30 "cat /mnt/hello.txt && ls /mnt/many | wc -l" && grep -qF "$text" <<<"$out"; then
		ok "read-only: reads work"
	else
		not_ok "read-only: reads work" "status $grc: $(oneline "$out")"
	fi
	end_boot
	echo "# read-only boot took $(secs "$boot_ms") s"
fi
stop_server
after=$(cd "$share" && find . -printf '%p %s %T@ %m\n' | sort | md5sum)
if [ "$before" = "$after" ]; then
	ok "read-only: host directory unchanged"
else
	not_ok "read-only: host directory unchanged" "listing, sizes, mtimes or modes changed"
fi
echo "# vhost-user-fs tier took $(secs $(($(now_ms) - tier_start))) s"
finish
