#!/usr/bin/env bash
# Linux-driver tier for kiln's sandbox mode: QEMU (TCG microvm) boots kiln's
# default guest with its agent as PID 1 (rdinit=/sbin/kiln-agent); the
# guest's virtio-vsock driver talks to `kiln vhost-user --device
# vsock,cid=3,uds=V` and `kiln exec --vsock V` / `kiln cp --vsock V` drive
# the real agent. Two virtio-fs shares served by kiln are mounted by the
# agent from kiln.mount= parameters (issue 5's agent side).
#
#   the agent announces itself on the ready port (the host never polls)
#   exit codes (0, 3, 127 not found, 126 not executable) and signals (137)
#   10 MiB of stdout byte-exact (md5 in the guest vs on the host)
#   1 MiB of stdin piped byte-exact
#   env (-e) and cwd (-w); a command on a pty of the asked size
#   timeout kill (--timeout 1 on sleep 30: 124 in well under 30 s)
#   20 concurrent execs, each with its own answer
#   file put and get of 5 MiB, byte-exact both ways; errors for a missing
#   guest file and a relative guest path
#   a client sending garbage is cut off while another exec carries on
#   shares: the agent mounted data at /mnt/data (rw) and ro at /srv/ro
#   (read-only: writes fail)
#   SHUTDOWN: the guest reboots and QEMU exits
#   bench: agent exec round trip vs a shell loop in the same guest
#
# Prints "ok - " / "not ok - " lines and exits 0 either way; non-zero only
# when the script itself breaks. KILN=path overrides build/kiln.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=tests/lib/qemu.sh
. tests/lib/qemu.sh

PROBE=$BUILD/tests/agent_probe
qemu_tier vhost-user-vsock
qemu_prereqs vhost-user-vsock-device vhost-user-fs-device
if [ ! -x "$PROBE" ]; then
	not_ok "prerequisites" "$PROBE is missing (make check builds it)"
	finish
fi
qemu_guest

V=$T/v
pids=()

# with KEEP_TMP=1 the logs stay, not the big files
# shellcheck disable=SC2317 # called from the trap
qemu_tier_cleanup() {
	local p
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	[ "${KEEP_TMP:-0}" = 1 ] && rm -f "$T"/*.bin
	return 0
}

# server NAME SPEC: kiln vhost-user in the background; waits for its socket.
server() {
	vu_server_start "$T/$1.sock" "$T/kiln-$1.log" "$2"
}

# kx ARGS...: kiln exec --vsock V with a hard limit; sets out, err, rc.
kx() {
	rc=0
	out=$(timeout -k 5 120 "$KILN" exec --vsock "$V" "$@" 2>"$T/err" </dev/null) || rc=$?
	err=$(cat "$T/err")
}

# --- boot ---
mkdir -p "$T/share" "$T/ro"
echo "hello from the host" >"$T/share/hello.txt"
echo "read-only data" >"$T/ro/ro.txt"
if ! server vsock "vsock,cid=3,uds=$V" || ! server fs "fs,dir=$T/share,tag=data" ||
	! server fsro "fs,dir=$T/ro,tag=rodata,ro"; then
	not_ok "servers start" "$(oneline "$(cat "$T"/kiln-*.log)")"
	finish
fi
"$PROBE" ready "$V" 90 >"$T/ready.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do grep -q listening "$T/ready.out" && break; sleep 0.1; done

boot_start=$(now_ms)
qemu_microvm "quiet rdinit=/sbin/kiln-agent kiln.mount=data:/mnt/data kiln.mount=rodata:/srv/ro:ro" \
	-serial "file:$T/console.log" \
	-chardev socket,id=c0,path="$T/vsock.sock" -device vhost-user-vsock-device,chardev=c0 \
	-chardev socket,id=c1,path="$T/fs.sock" -device vhost-user-fs-device,chardev=c1,tag=data \
	-chardev socket,id=c2,path="$T/fsro.sock" -device vhost-user-fs-device,chardev=c2,tag=rodata
qemu_start 300 /dev/null "$T/qemu.log"

ready=
for _ in $(seq 1 900); do
	grep -q '^READY' "$T/ready.out" && ready=1 && break
	kill -0 "$qemu_pid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$ready" ]; then
	not_ok "agent announces itself on the ready port" \
		"$(oneline "$(cat "$T/ready.out"; tail -5 "$T/console.log")")"
	finish
fi
ok "agent announces itself on the ready port after $(($(now_ms) - boot_start)) ms ($(oneline "$(grep READY "$T/ready.out")"))"

# --- exit codes and signals ---
kx -- uname -a
if [ "$rc" = 0 ] && [[ "$out" == Linux\ kiln* ]]; then ok "uname -a: $out"; else not_ok "uname -a" "rc=$rc out=$out err=$err"; fi
kx -- sh -c 'exit 3'
[ "$rc" = 3 ] && ok "exit 3 -> 3" || not_ok "exit 3" "rc=$rc err=$err"
kx -- no-such-command
if [ "$rc" = 127 ] && grep -q "No such file" <<<"$err"; then ok "not found -> 127 ($err)"; else not_ok "not found" "rc=$rc err=$err"; fi
kx -- /etc/passwd
[ "$rc" = 126 ] && ok "not executable -> 126" || not_ok "not executable" "rc=$rc err=$err"
kx -- sh -c 'kill -9 $$'
[ "$rc" = 137 ] && ok "killed by SIGKILL -> 137" || not_ok "SIGKILL" "rc=$rc err=$err"
kx -- sh -c 'kill -TERM $$'
[ "$rc" = 143 ] && ok "killed by SIGTERM -> 143" || not_ok "SIGTERM" "rc=$rc err=$err"

# --- streams ---
kx -- sh -c 'head -c 10485760 /dev/urandom >/tmp/big && md5sum </tmp/big'
guest_md5=${out%% *}
host_md5=$(timeout 120 "$KILN" exec --vsock "$V" -- cat /tmp/big 2>"$T/err" | md5sum)
host_md5=${host_md5%% *}
if [ -n "$guest_md5" ] && [ "$guest_md5" = "$host_md5" ]; then
	ok "10 MiB of stdout byte-exact (md5 $host_md5)"
else
	not_ok "10 MiB stdout" "guest $guest_md5 host $host_md5 $(oneline "$(cat "$T/err")")"
fi
kx -- sh -c 'echo to-stderr >&2; echo to-stdout'
[ "$out" = to-stdout ] && [ "$err" = to-stderr ] && ok "stdout and stderr apart" ||
	not_ok "stdout/stderr" "out=$out err=$err"
head -c 1048576 /dev/urandom >"$T/in.bin"
want=$(md5sum <"$T/in.bin")
got=$(timeout 120 "$KILN" exec -i --vsock "$V" -- md5sum <"$T/in.bin" 2>"$T/err")
[ "${want%% *}" = "${got%% *}" ] && ok "1 MiB of stdin piped byte-exact" ||
	not_ok "stdin" "want $want got $got $(oneline "$(cat "$T/err")")"
kx -e FOO=bar -e "SPACED=a b" -w /tmp -- sh -c 'echo "$FOO|$SPACED|$(pwd)"'
[ "$out" = "bar|a b|/tmp" ] && ok "env and cwd ($out)" || not_ok "env and cwd" "out=$out err=$err"
kx -w /no/such/dir -- true
if [ "$rc" != 0 ] && grep -qi "chdir" <<<"$err"; then
	ok "missing cwd is an error ($rc: $err)"
else
	not_ok "missing cwd" "rc=$rc err=$err"
fi

p=$(timeout 60 "$PROBE" pty "$V" 2>&1 | tr -d '\r')
if grep -q '^/dev/pts/[0-9]' <<<"$p" && grep -qx '30 100' <<<"$p"; then
	ok "exec on a pty (UNIX98 ptys in the guest kernel): $(oneline "$p")"
else
	not_ok "exec on a pty" "$(oneline "$p")"
fi

# --- timeout ---
t0=$(now_ms)
kx --timeout 1 -- sleep 30
t=$(($(now_ms) - t0))
if [ "$rc" = 124 ] && [ "$t" -lt 10000 ]; then ok "timeout kill -> 124 after $t ms"; else not_ok "timeout" "rc=$rc after $t ms err=$err"; fi

# --- concurrency ---
cpids=()
for i in $(seq 1 20); do
	timeout -k 5 120 "$KILN" exec --vsock "$V" -- sh -c "sleep 1; echo \$(( $i * $i ))" >"$T/c.$i" 2>&1 </dev/null &
	cpids+=($!)
done
bad=0
for i in $(seq 1 20); do
	wait "${cpids[$((i - 1))]}" || bad=$((bad + 1))
	[ "$(cat "$T/c.$i")" = $((i * i)) ] || bad=$((bad + 1))
done
[ "$bad" = 0 ] && ok "20 concurrent execs, each with its own answer" ||
	not_ok "20 concurrent execs" "$bad wrong: $(oneline "$(head -q "$T"/c.* | sort | uniq -c)")"

# --- files ---
head -c 5242880 /dev/urandom >"$T/f5.bin"
if timeout 120 "$KILN" cp --vsock "$V" "$T/f5.bin" :/tmp/f5 2>"$T/err"; then
	kx -- md5sum /tmp/f5
	if [ "${out%% *}" = "$(md5sum <"$T/f5.bin" | cut -d' ' -f1)" ]; then ok "put 5 MiB byte-exact"; else not_ok "put 5 MiB" "md5 $out"; fi
else
	not_ok "put 5 MiB" "$(oneline "$(cat "$T/err")")"
fi
if timeout 120 "$KILN" cp --vsock "$V" :/tmp/f5 "$T/f5.back.bin" 2>"$T/err" && cmp -s "$T/f5.bin" "$T/f5.back.bin"; then
	ok "get 5 MiB byte-exact"
else
	not_ok "get 5 MiB" "$(oneline "$(cat "$T/err")")"
fi
echo keep >"$T/keep.txt"
rc=0
timeout 60 "$KILN" cp --vsock "$V" :/no/such/file "$T/keep.txt" 2>"$T/err" || rc=$?
if [ "$rc" = 125 ] && [ "$(cat "$T/keep.txt")" = keep ] && ! ls "$T"/keep.txt.kiln-* >/dev/null 2>&1; then
	ok "get of a missing file: 125, the host file untouched ($(oneline "$(cat "$T/err")"))"
else
	not_ok "get of a missing file" "rc=$rc $(oneline "$(cat "$T/err")")"
fi
rc=0
timeout 60 "$KILN" cp --vsock "$V" "$T/keep.txt" :relative/path 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && ok "relative guest path is a usage error" || not_ok "relative guest path" "rc=$rc $(oneline "$(cat "$T/err")")"

# --- a hostile client ---
timeout -k 5 60 "$KILN" exec --vsock "$V" -- sh -c 'sleep 2; echo survived' >"$T/long.out" 2>&1 </dev/null &
long=$!
sleep 0.5
g=$("$PROBE" garbage "$V" 2>&1)
wait "$long"
lrc=$?
if [ "$g" = closed ] && [ "$lrc" = 0 ] && [ "$(cat "$T/long.out")" = survived ]; then
	ok "a garbage client is cut off, another exec carries on"
else
	not_ok "garbage client" "probe=$(oneline "$g") long rc=$lrc out=$(oneline "$(cat "$T/long.out")")"
fi
kx -- true
[ "$rc" = 0 ] && ok "the agent serves new connections afterwards" || not_ok "after garbage" "rc=$rc err=$err"

# --- shares mounted by the agent ---
kx -- cat /mnt/data/hello.txt
[ "$out" = "hello from the host" ] && ok "agent mounted share data at /mnt/data" || not_ok "share /mnt/data" "rc=$rc out=$out err=$err"
kx -- sh -c 'echo from-guest >/mnt/data/made-in-guest.txt'
[ "$(cat "$T/share/made-in-guest.txt" 2>/dev/null)" = from-guest ] && ok "guest write through the share reaches the host" ||
	not_ok "share write" "rc=$rc err=$err"
kx -- sh -c 'cat /srv/ro/ro.txt && grep " /srv/ro " /proc/mounts'
if [ "$rc" = 0 ] && [[ "$out" == "read-only data"* ]] && grep -q "virtiofs ro" <<<"$out"; then
	ok "agent mounted share rodata read-only at /srv/ro"
else
	not_ok "share /srv/ro" "rc=$rc out=$(oneline "$out") err=$err"
fi
kx -- sh -c 'echo x >/srv/ro/new.txt'
if [ "$rc" != 0 ] && [ ! -e "$T/ro/new.txt" ]; then
	ok "read-only share refuses writes ($(oneline "$err"))"
else
	not_ok "ro share write" "rc=$rc"
fi

# --- bench (not a timed test: a line to quote) ---
if bench=$(timeout 300 "$PROBE" bench "$V" "${AGENT_BENCH_N:-100}" 2>&1); then
	echo "# $bench (QEMU TCG guest)"
else
	not_ok "bench runs" "$(oneline "$bench")"
fi

# --- shutdown ---
if "$PROBE" shutdown "$V" >/dev/null 2>"$T/err"; then
	gone=
	for _ in $(seq 1 300); do
		kill -0 "$qemu_pid" 2>/dev/null || { gone=1; break; }
		sleep 0.1
	done
	if [ -n "$gone" ] && grep -q "reboot: Restarting system" "$T/console.log"; then
		ok "SHUTDOWN: the guest rebooted and QEMU exited"
		qemu_pid=
	else
		not_ok "SHUTDOWN" "QEMU still running: $(oneline "$(tail -3 "$T/console.log")")"
	fi
else
	not_ok "SHUTDOWN" "$(oneline "$(cat "$T/err")")"
fi
finish
