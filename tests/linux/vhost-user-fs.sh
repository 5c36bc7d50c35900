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

BUILD=${BUILD:-build}
KILN=${KILN:-$BUILD/kiln}
marker="kiln-guest: init ready"
passed=0
failed=0

ok() {
	echo "ok - vhost-user-fs: $1"
	passed=$((passed + 1))
}
not_ok() {
	echo "not ok - vhost-user-fs: $1: $2"
	failed=$((failed + 1))
}
finish() {
	echo "vhost-user-fs: $passed passed, $failed failed"
	exit 0
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%02d' $(($1 / 1000)) $(($1 % 1000 / 10)); }
oneline() { tr '\n' ' ' <<<"$1" | cut -c1-300; }

# kill_qemu: SIGKILL to QEMU itself, not just to the `timeout` wrapping it
# (which would leave QEMU running, still connected to the server).
kill_qemu() {
	[ -n "$qemu_pid" ] || return 0
	pkill -KILL -P "$qemu_pid" 2>/dev/null
	kill -KILL "$qemu_pid" 2>/dev/null
	wait "$qemu_pid" 2>/dev/null
	qemu_pid=
}

# --- prerequisites ---
if ! command -v qemu-system-x86_64 >/dev/null; then
	not_ok "prerequisites" "qemu-system-x86_64 not found (run scripts/install-deps.sh)"
	finish
fi
if ! qemu-system-x86_64 -device help 2>/dev/null | grep -q '"vhost-user-fs-device"'; then
	not_ok "prerequisites" "this QEMU has no vhost-user-fs-device"
	finish
fi
if ! "$KILN" vhost-user --help 2>/dev/null | grep -q 'fs,dir='; then
	not_ok "prerequisites" "$KILN has no 'vhost-user --device fs'"
	finish
fi
if ! guest_line=$(scripts/build-guest.sh "$BUILD/guest"); then
	not_ok "prerequisites" "scripts/build-guest.sh $BUILD/guest failed"
	finish
fi
echo "# $guest_line"

T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-vu-fs.XXXXXX")
share=$T/share
outside=$T/outside
sock=$T/vu.sock
fifo=$T/console.in
con=
kiln_pid=
qemu_pid=
con_fd=

# shellcheck disable=SC2317 # called from the trap
cleanup() {
	kill_qemu
	[ -n "$kiln_pid" ] && kill -KILL "$kiln_pid" 2>/dev/null
	wait 2>/dev/null
	if [ "${KEEP_TMP:-0}" = 1 ] || [ "$failed" -gt 0 ]; then
		rm -rf "$share/many" "$share"/*.bin # big and uninteresting
		echo "# logs kept in $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT

# start_server SPEC: kiln vhost-user in the background; waits for the socket.
start_server() {
	rm -f "$sock"
	"$KILN" vhost-user ${KILN_VERBOSE:+-v} --socket "$sock" --device "$1" 2>>"$T/kiln.log" &
	kiln_pid=$!
	local _
	for _ in $(seq 1 100); do
		[ -S "$sock" ] && return 0
		kill -0 "$kiln_pid" 2>/dev/null || break
		sleep 0.1
	done
	return 1
}

# stop_server: SIGTERM, at most 5 s; sets stop_rc.
stop_server() {
	local _
	stop_rc=
	kill -TERM "$kiln_pid" 2>/dev/null
	for _ in $(seq 1 50); do
		if ! kill -0 "$kiln_pid" 2>/dev/null; then
			wait "$kiln_pid"
			stop_rc=$?
			kiln_pid=
			return 0
		fi
		sleep 0.1
	done
	kill -KILL "$kiln_pid" 2>/dev/null
	wait "$kiln_pid" 2>/dev/null
	kiln_pid=
	return 1
}

# boot: QEMU as in the testing notes (shared memfd RAM, modern virtio-mmio,
# i8042 for reboot=k), the share as vhost-user-fs-device tag "data".
boot_no=0
boot() {
	boot_no=$((boot_no + 1))
	con=$T/console-$boot_no.log # one per boot, kept on failure
	rm -f "$fifo"
	mkfifo "$fifo"
	: >"$con"
	# Read-write open: never blocks and QEMU never sees EOF.
	exec {con_fd}<>"$fifo"
	boot_start=$(now_ms)
	timeout -k 5 120 qemu-system-x86_64 \
		-M microvm,acpi=off,memory-backend=mem,x-option-roms=off,rtc=on,isa-serial=on \
		-global virtio-mmio.force-legacy=false -accel tcg -cpu max -m 256 \
		-object memory-backend-memfd,id=mem,size=256M,share=on \
		-nodefaults -no-user-config -nographic -no-reboot -serial stdio \
		-device i8042 \
		-chardev socket,id=c0,path="$sock" -device vhost-user-fs-device,chardev=c0,tag=data \
		-kernel "$BUILD/guest/vmlinux" -initrd "$BUILD/guest/initramfs.cpio.gz" \
		-append "console=ttyS0 reboot=k panic=-1 quiet" \
		<"$fifo" >"$con" 2>&1 &
	qemu_pid=$!
}

# wait_for REGEX SECONDS: polls the console log (carriage returns removed).
wait_for() {
	local end=$(($(now_ms) + $2 * 1000))
	while [ "$(now_ms)" -lt "$end" ]; do
		tr -d '\r' <"$con" | grep -qE -- "$1" && return 0
		kill -0 "$qemu_pid" 2>/dev/null || {
			tr -d '\r' <"$con" | grep -qE -- "$1"
			return
		}
		sleep 0.1
	done
	return 1
}

# Waits for init's marker, then for the shell to answer.
shell_ready() {
	wait_for "$marker" 60 || return 1
	local _
	for _ in $(seq 1 20); do
		echo 'echo @@@"ready"' >&"$con_fd"
		wait_for '^@@@ready' 1 && break
	done
	tr -d '\r' <"$con" | grep -q '^@@@ready' || return 1
	echo 'stty -echo' >&"$con_fd"
	return 0
}

# gsh SECONDS CMD: runs CMD in the guest shell; sets out (its output),
# grc (its status, or "timeout") and gsh_ms (how long it took).
cmd_no=0
gsh() {
	local limit=$1 start t0
	shift
	cmd_no=$((cmd_no + 1))
	start=$(wc -c <"$con")
	t0=$(now_ms)
	printf '%s; echo @@@"done%d" rc=$?\n' "$*" "$cmd_no" >&"$con_fd"
	if ! wait_for "@@@done$cmd_no rc=[0-9]+" "$limit"; then
		out=$(tail -c +$((start + 1)) "$con" | tr -d '\r')
		grc=timeout
		gsh_ms=$(($(now_ms) - t0))
		return 124
	fi
	gsh_ms=$(($(now_ms) - t0))
	out=$(tail -c +$((start + 1)) "$con" | tr -d '\r')
	grc=$(sed -n "s/.*@@@done$cmd_no rc=\([0-9]*\).*/\1/p" <<<"$out" | tail -1)
	out=$(sed "/@@@done$cmd_no rc=/d" <<<"$out")
	return "$grc"
}

# end_boot: reboot -f and wait for QEMU to exit; sets boot_ms, qemu_rc.
end_boot() {
	echo 'reboot -f' >&"$con_fd"
	local _
	for _ in $(seq 1 300); do
		kill -0 "$qemu_pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$qemu_pid" 2>/dev/null; then
		kill_qemu
		qemu_rc=137
	else
		wait "$qemu_pid" 2>/dev/null
		qemu_rc=$?
		qemu_pid=
	fi
	boot_ms=$(($(now_ms) - boot_start))
	exec {con_fd}>&-
}

console_tail() {
	echo "# last console lines:"
	tr -d '\r' <"$con" | tail -n 15 | sed 's/^/#   /'
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
kill_qemu
exec {con_fd}>&-
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
