#!/usr/bin/env bash
# Network benchmark (not a timed test): the same QEMU TCG microvm guest with
# the same virtio-net driver moves 64 MiB each way and opens TCP connections
# through four user-mode networks, alternating, in one run:
#   qemu     QEMU's own -netdev user (its libslirp)
#   kiln     `kiln vhost-user --device net,egress=all` (kiln's libslirp NAT,
#            the policy short-circuited)
#   policy   the same with egress=public and an allow rule for the host's
#            ports, so every frame goes through the whole policy
#   passt    `-netdev stream` to passt, if both are there (else said so)
# plus the host's own loopback (python, one process) as the limit. TCG makes
# the guest the bottleneck, so this compares the networks under one guest.
#   ROUNDS (3)  MIB (64)  CONNS (50)  PASST (1; 0 skips passt: its connection test takes minutes)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-3}
MIB=${MIB:-64}
CONNS=${CONNS:-50}
G=$BUILD/guest
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
[ -f "$G/vmlinux" ] || scripts/build-guest.sh "$G" >/dev/null || exit 1
T=$(mktemp -d)
pids=()
trap 'kill -KILL "${pids[@]}" 2>/dev/null; rm -rf "$T"' EXIT

# host side: a sink (counts), a source (MIB MiB), a one-line responder
"$PY" - "$MIB" >"$T/ports" <<'EOF' &
import socket, sys, threading, time
mib = int(sys.argv[1])
data = b"\xa5" * (1 << 20)
def srv(fn):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
    def loop():
        while True:
            c, _ = s.accept(); threading.Thread(target=fn, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return s.getsockname()[1]
def sink(c):
    while c.recv(1 << 16): pass
    c.close()
def source(c):
    for _ in range(mib): c.sendall(data)
    c.close()
def answer(c):
    c.recv(64); c.sendall(b"ok\n"); c.close()
ports = [srv(sink), srv(source), srv(answer)]
# the host's loopback as the limit: one connection, MIB MiB
a = socket.socket(); a.bind(("127.0.0.1", 0)); a.listen(1)
t = threading.Thread(target=lambda: sink(a.accept()[0])); t.start()
b = socket.create_connection(a.getsockname()); t0 = time.monotonic()
for _ in range(mib * 4): b.sendall(data)
b.close(); t.join()
ports.append(int(mib * 4 / (time.monotonic() - t0)))
print(*ports, flush=True)
threading.Event().wait()
EOF
pids+=($!)
disown "${pids[-1]}" # no "Killed" line when the trap ends it
for _ in $(seq 100); do [ -s "$T/ports" ] && break; sleep 0.1; done
read -r P_SINK P_SOURCE P_ANSWER HOST_MBS <"$T/ports"

# run_guest NETDEV_ARGS...: boots the guest and prints "up S", "down S",
# "conns S" (seconds, from the guest's /proc/uptime)
run_guest() {
	local fifo=$T/in out=$T/out
	rm -f "$fifo"
	mkfifo "$fifo"
	timeout 300 qemu-system-x86_64 -M microvm,acpi=off,memory-backend=mem,x-option-roms=off,rtc=on,isa-serial=on \
		-global virtio-mmio.force-legacy=false -accel tcg -cpu max -m 512 \
		-object memory-backend-memfd,id=mem,size=512M,share=on \
		-nodefaults -no-user-config -nographic -no-reboot -serial stdio -device i8042 \
		"$@" -device virtio-net-device,netdev=n0 \
		-kernel "$G/vmlinux" -initrd "$G/initramfs.cpio.gz" -append "console=ttyS0 reboot=k panic=-1 quiet" \
		<"$fifo" >"$out" 2>&1 &
	local q=$!
	exec 8>"$fifo"
	for _ in $(seq 600); do grep -q "kiln-guest: init ready" "$out" && break; sleep 0.1; done
	sleep 0.3
	cat >&8 <<EOF
ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 up; ip route add default via 10.0.2.2
head -c $((MIB << 20)) /dev/zero >/tmp/up
u() { cut -d' ' -f1 /proc/uptime; }
s=\$(u); nc 10.0.2.2 $P_SINK </tmp/up; e=\$(u); echo "RESULT up \$s \$e"
s=\$(u); nc 10.0.2.2 $P_SOURCE </dev/null >/dev/null; e=\$(u); echo "RESULT down \$s \$e"
s=\$(u); i=0; while [ \$i -lt $CONNS ]; do echo x | nc 10.0.2.2 $P_ANSWER >/dev/null; i=\$((i+1)); done; e=\$(u); echo "RESULT conns \$s \$e"
reboot -f
EOF
	wait "$q"
	exec 8>&-
	tr -d '\r' <"$out" | awk '/^RESULT/ {printf "%s %.3f\n", $2, $4 - $3}'
}

run_kiln() { # SPEC
	local sock=$T/k.sock
	rm -f "$sock"
	"$BUILD/kiln" vhost-user --socket "$sock" --device "$1" >/dev/null 2>&1 &
	pids+=($!)
	disown "${pids[-1]}"
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
	run_guest -chardev socket,id=c0,path="$sock" -netdev vhost-user,id=n0,chardev=c0
	kill "${pids[-1]}" 2>/dev/null
	wait "${pids[-1]}" 2>/dev/null
}

peers="qemu kiln policy"
passt_note=
if [ "${PASST:-1}" = 0 ]; then
	passt_note="passt: skipped (PASST=0)"
elif command -v passt >/dev/null && qemu-system-x86_64 -netdev help 2>/dev/null | grep -qw stream; then
	peers="$peers passt"
else
	passt_note="passt: not compared ($(command -v passt >/dev/null || echo 'passt is not installed')$(qemu-system-x86_64 -netdev help 2>/dev/null | grep -qw stream || echo "; this QEMU has no -netdev stream"))"
fi
for r in $(seq "$ROUNDS"); do
	# each round starts with another peer: no peer always runs last
	read -ra order <<<"$peers"
	n=${#order[@]}
	rot=()
	for i in $(seq 0 $((n - 1))); do rot+=("${order[$(((i + r) % n))]}"); done
	for p in "${rot[@]}"; do
		case $p in
		qemu) run_guest -netdev user,id=n0 ;;
		kiln) run_kiln "net,egress=all" ;;
		policy) run_kiln "net,rules=allow:host:$P_SINK;allow:host:$P_SOURCE;allow:host:$P_ANSWER" ;;
		passt)
			passt -f -q -s "$T/passt.sock" >/dev/null 2>&1 &
			pids+=($!)
			sleep 0.5
			run_guest -netdev "stream,id=n0,server=off,addr.type=unix,addr.path=$T/passt.sock"
			kill "${pids[-1]}" 2>/dev/null
			;;
		esac | sed "s/^/$p /" >>"$T/results"
	done
done

# best of the rounds for each peer and test
best() { awk -v p="$1" -v t="$2" '$1 == p && $2 == t && (b == "" || $3 < b) { b = $3 } END { print b }' "$T/results"; }
rate() { awk -v s="$1" -v n="$2" 'BEGIN { if (s > 0) printf "%.1f", n / s; else print "?" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", b / a; else print "?" }'; }
for t in up down conns; do
	q=$(best qemu $t)
	k=$(best kiln $t)
	pol=$(best policy $t)
	n=$MIB
	unit="MiB/s"
	what="guest -> host"
	[ $t = down ] && what="host -> guest"
	[ $t = conns ] && { n=$CONNS; unit="connections/s"; what="connect + request + answer"; }
	echo "net $what: kiln $(rate "$k" "$n") $unit vs QEMU user $(rate "$q" "$n") $unit, ratio $(ratio "$k" "$q") (target >= 1.0); policy on $(rate "$pol" "$n") $unit, on/off $(ratio "$pol" "$k") (target >= 0.95) (best of $ROUNDS, TCG guest; host loopback ${HOST_MBS} MiB/s)"
	if [ -n "$(best passt $t)" ]; then
		echo "net $what: passt $(rate "$(best passt $t)" "$n") $unit"
	fi
done
[ -n "$passt_note" ] && echo "net: $passt_note"
exit 0
