#!/usr/bin/env bash
# Network tier: `kiln run --net ...` on whichever engine `--accel auto` picks
# (on TCG kiln's virtio-net reaches QEMU over vhost-user-net), with the
# guest's real virtio-net driver and kiln's user-mode NAT and egress policy:
#   --net none (the default): only lo in the guest
#   --net user,egress=all: eth0 configured by the agent (address, route,
#     resolv.conf); a host TCP server on 127.0.0.1 reached as 10.0.2.2;
#     64 MiB each way byte-exact
#   --net user (public): the host alias, 169.254.169.254 and RFC 1918
#     refused; egress=none refuses everything; denials are logged
#   --allow host:PORT reaches that host service; denied connections fail at
#     once (RST / ICMP unreachable); egress=none with an allow rule
#   -p HOSTPORT:GUESTPORT reaches a guest server, a taken port is refused
#     before boot, and a published port is no way out
#   --dns IP:PORT and --allow-domain: kiln's resolver proxy (a test DNS
#     server on the host's loopback): allowed names resolve and their
#     addresses open, others get NXDOMAIN under egress=none, a name that
#     answers with a private address opens nothing (rebinding)
#   bad --net/--allow/-p/--dns values are usage errors (2)
#   IPv6: the guest gets fec0::/64 from the NAT, reaches the host's ::1 as
#     fec0::2 under egress=all, and the public posture refuses it at once
#   cluster networks: kiln network create/ls/inspect/rm; two sandboxes on
#     one network exchange TCP both ways by name; a third, not on it (with
#     --net user), cannot reach them; killing one member leaves the other
#     and the switch working (a new member joins and talks); rm refuses a
#     network with members unless --force
# Host-side servers are small python3 programs on 127.0.0.1.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/harness.sh

T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-net.XXXXXX")
export XDG_RUNTIME_DIR=$T/run
mkdir -m 0700 "$XDG_RUNTIME_DIR"
pids=()
# shellcheck disable=SC2317 # called from the trap
cleanup() {
	# nothing of a failed run may outlive it: sandboxes, the switch
	"$KILN" stop ca cb >/dev/null 2>&1
	"$KILN" network rm --force clu >/dev/null 2>&1
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
oneline() { tr '\n' ' ' <"$1" | cut -c1-400; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

check "--net with an unknown mode" 2 "expected none or user" -- run --net bridge -- true
check "--net user with a bad egress" 2 "egress=open" -- run --net user,egress=open -- true
check "--net user with a bad mac" 2 "mac=" -- run --net user,mac=01:02:03:04:05:06 -- true
check "--net user with a bad network" 2 "net=" -- run --net user,net=10.0.2.0/31 -- true

if [ ! -f "$BUILD/guest/initramfs.cpio.gz" ]; then
	fail "net prerequisites" "no default guest in $BUILD/guest (make guest)"
	exit 0
fi
. tests/lib/engine.sh
ENGINE=$(engine_here)
if [ -z "$ENGINE" ]; then
	skip "kiln run --net (NIC, NAT, policy, 64 MiB each way)" "$(engine_none_reason)"
	exit 0
fi
E=" [$ENGINE]"
kr() { KILN_TEST_LIMIT=180 run_kiln "$T/out" "$T/err" -- run "$@"; }

# --- host-side servers: an HTTP-ish responder, a sink, a source ---
port_file=$T/ports
"$PY" - "$T" >"$port_file" 2>"$T/servers.log" <<'EOF' &
import hashlib, os, socket, sys, threading
t = sys.argv[1]
def listen():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8); return s
def hello(s):
    while True:
        c, _ = s.accept(); c.recv(4096)
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from the host\n"); c.close()
def sink(s):
    while True:
        c, _ = s.accept(); h = hashlib.md5(); n = 0
        while True:
            b = c.recv(1 << 16)
            if not b: break
            h.update(b); n += len(b)
        open(os.path.join(t, "sink.md5"), "w").write(f"{h.hexdigest()} {n}\n"); c.close()
def source(s):
    data = open(os.path.join(t, "src.bin"), "rb").read()
    while True:
        c, _ = s.accept(); c.sendall(data); c.close()
with open(os.path.join(t, "src.bin"), "wb") as f:
    f.write(os.urandom(64 << 20))
socks = [listen() for _ in range(3)]
for fn, s in zip((hello, sink, source), socks):
    threading.Thread(target=fn, args=(s,), daemon=True).start()
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
threading.Event().wait()
EOF
pids+=($!)
for _ in $(seq 1 100); do [ -s "$port_file" ] && break; sleep 0.1; done
read -r P_HELLO P_SINK P_SOURCE <"$port_file" || true
if [ -z "${P_SOURCE:-}" ]; then
	fail "net host servers" "did not start: $(oneline "$T/servers.log")"
	exit 0
fi

# --- no NIC by default ---
kr -- sh -c 'ls /sys/class/net'
if [ "$rc" = 0 ] && [ "$(tr '\n' ' ' <"$T/out")" = "lo " ]; then
	pass "kiln run without --net: only lo in the guest$E"
else
	fail "no NIC by default" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
fi
kr --net none -- sh -c 'ls /sys/class/net'
[ "$rc" = 0 ] && [ "$(tr '\n' ' ' <"$T/out")" = "lo " ] && pass "--net none: only lo$E" ||
	fail "--net none" "exit $rc: $(oneline "$T/out")"

# --- egress=all: configured, the host reachable ---
kr --net user,egress=all -- sh -c "ip -4 addr show eth0 | grep -o 'inet [0-9./]*'; ip route | grep default; cat /etc/resolv.conf; printf 'GET /\r\n\r\n' | nc -w 10 10.0.2.2 $P_HELLO"
if [ "$rc" = 0 ] && grep -q "inet 10.0.2.15/24" "$T/out" && grep -q "default via 10.0.2.2 dev eth0" "$T/out" &&
	grep -q "nameserver 10.0.2.3" "$T/out" && grep -q "hello from the host" "$T/out"; then
	pass "--net user,egress=all: eth0 10.0.2.15/24, default via 10.0.2.2, resolv.conf, host's 127.0.0.1:$P_HELLO reached as 10.0.2.2$E"
else
	fail "--net user,egress=all" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
fi

# 64 MiB guest -> host and host -> guest, byte-exact
t0=$(now_ms)
kr --net user,egress=all --memory 512 -- sh -c "head -c 67108864 /dev/urandom >/tmp/up && md5sum </tmp/up && nc -w 30 10.0.2.2 $P_SINK </tmp/up"
t=$(($(now_ms) - t0))
sleep 0.5
want=$(cut -d' ' -f1 "$T/out" 2>/dev/null)
if [ "$rc" = 0 ] && [ -n "$want" ] && [ "$(cat "$T/sink.md5" 2>/dev/null)" = "$want 67108864" ]; then
	pass "--net user: 64 MiB guest -> host byte-exact ($t ms with boot)$E"
else
	fail "64 MiB guest -> host" "exit $rc: guest $want, host $(cat "$T/sink.md5" 2>/dev/null): $(oneline "$T/err")"
fi
t0=$(now_ms)
kr --net user,egress=all --memory 512 -- sh -c "nc -w 30 10.0.2.2 $P_SOURCE </dev/null >/tmp/down; wc -c </tmp/down; md5sum </tmp/down"
t=$(($(now_ms) - t0))
if [ "$rc" = 0 ] && grep -qx "67108864" "$T/out" && grep -q "$(md5sum <"$T/src.bin" | cut -d' ' -f1)" "$T/out"; then
	pass "--net user: 64 MiB host -> guest byte-exact ($t ms with boot)$E"
else
	fail "64 MiB host -> guest" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
fi

# --- the public posture and egress=none refuse what is not the internet ---
probe="for d in 10.0.2.2:$P_HELLO 169.254.169.254:80 192.168.1.1:80 10.1.2.3:80; do
	if printf 'x' | nc -w 2 \${d%:*} \${d#*:} >/dev/null 2>&1; then echo reached \$d; else echo refused \$d; fi
done"
for net in user user,egress=none; do
	kr -v --net "$net" -- sh -c "$probe"
	if [ "$rc" = 0 ] && [ "$(grep -c '^refused' "$T/out")" = 4 ] && grep -q " denied (" "$T/err"; then
		pass "--net $net: the host alias, 169.254.169.254, 192.168.1.1, 10.1.2.3 refused, denials logged$E"
	else
		fail "--net $net refusals" "exit $rc: $(oneline "$T/out") $(grep -v vhost-user "$T/err" | tr '\n' ' ' | cut -c1-300)"
	fi
done

# --- rules: a host service by --allow host:PORT; refusals are immediate ---
fast="t0=\$(cut -d' ' -f1 /proc/uptime)
printf 'GET /\r\n\r\n' | nc -w 10 10.0.2.2 $P_HELLO
for d in 10.0.2.2:$P_SINK 169.254.169.254:80 192.168.1.1:80; do
	if printf x | nc -w 10 \${d%:*} \${d#*:} >/dev/null 2>&1; then echo reached \$d; else echo refused \$d; fi
done
t1=\$(cut -d' ' -f1 /proc/uptime)
echo ms=\$(awk \"BEGIN{print int((\$t1 - \$t0) * 1000)}\")"
kr --net user --allow "host:$P_HELLO" -- sh -c "$fast"
ms=$(sed -n 's/^ms=//p' "$T/out")
if [ "$rc" = 0 ] && grep -q "hello from the host" "$T/out" && [ "$(grep -c '^refused' "$T/out")" = 3 ] &&
	[ -n "$ms" ] && [ "$ms" -lt 3000 ] && grep -q "net: the egress policy refused [0-9]* frames" "$T/err"; then
	pass "--net user --allow host:$P_HELLO: that host service reached; another host port, 169.254.169.254 and 192.168.1.1 refused at once (RST/ICMP; all within $ms ms), the refusals counted$E"
else
	fail "--allow host:PORT" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
fi
kr --net user --allow "host:$P_HELLO" -- wget -q -O - "http://10.0.2.2:$P_HELLO/"
[ "$rc" = 0 ] && grep -q "hello from the host" "$T/out" && pass "--allow host:$P_HELLO: busybox wget fetches from the host's HTTP server$E" ||
	fail "wget through --allow host:PORT" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
kr --net user,egress=none --allow "host:$P_HELLO" --deny 10.0.2.2 -- sh -c "printf 'GET /\r\n\r\n' | nc -w 5 10.0.2.2 $P_HELLO"
[ "$rc" = 0 ] && grep -q "hello from the host" "$T/out" && pass "--net user,egress=none --allow host:PORT: rules come first$E" ||
	fail "egress=none with an allow rule" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
check "--allow without --net user" 2 "need --net user" -- run --allow 1.2.3.4 -- true
check "--allow with a bad rule" 2 "is not ALLOW" -- run --net user --allow 1.2.3.0/16 -- true
check "-p with a bad spec" 2 "expected \[HOSTIP:\]HOSTPORT" -- run --net user -p 80 -- true

# --- -p: a guest server published on the host's loopback ---
hp=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(KILN_TEST_LIMIT=120 run_kiln "$T/pub.out" "$T/pub.err" -- run --net user -p "$hp:8080" -- sh -c \
	'echo "from the guest" | nc -l -p 8080; printf x | nc -w 3 -p 8080 192.168.1.1 80; echo abuse=$?') &
pub=$!
got=
for _ in $(seq 1 100); do
	got=$("$PY" -c "import socket; s = socket.create_connection(('127.0.0.1', $hp), timeout=2); print(s.recv(100).decode().strip())" 2>/dev/null) &&
		[ -n "$got" ] && break
	sleep 0.3
done
wait "$pub"
if [ "$got" = "from the guest" ] && grep -q "abuse=1" "$T/pub.out"; then
	pass "-p 127.0.0.1:$hp:8080: the host reached a server in the guest; the published port is no way out to 192.168.1.1$E"
else
	fail "-p forward" "host got '$got': $(oneline "$T/pub.out") $(oneline "$T/pub.err")"
fi
"$PY" - "$KILN" <<'PYEOF' >"$T/taken" 2>&1
import socket, subprocess, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
p = subprocess.run([sys.argv[1], "run", "--net", "user", "-p", f"{s.getsockname()[1]}:80", "--", "true"],
                   capture_output=True, timeout=120)
print(p.returncode, p.stderr.decode().strip().splitlines()[-1])
PYEOF
grep -q "^125 .*cannot forward TCP port" "$T/taken" && pass "-p on a taken host port: 125 before boot, saying so$E" ||
	fail "-p taken port" "$(oneline "$T/taken")"

# --- --dns and --allow-domain: kiln's resolver proxy ---
"$PY" - >"$T/dnsport" 2>"$T/dns.log" <<'PYEOF' &
import socket, struct
ans = {"allowed.test": "93.184.216.34", "other.test": "93.184.216.35", "rebind.test": "169.254.169.254"}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    m, a = s.recvfrom(4096)
    off, labels = 12, []
    while m[off]:
        labels.append(m[off + 1:off + 1 + m[off]].decode()); off += 1 + m[off]
    name, qend = ".".join(labels).lower(), off + 5
    ip = ans.get(name)
    if ip and m[off + 2] == 1:
        rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + socket.inet_aton(ip)
        s.sendto(m[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0) + m[12:qend] + rr, a)
    else:
        s.sendto(m[:2] + bytes([0x81, 0x80 | (0 if ip else 3)]) + struct.pack(">HHHH", 1, 0, 0, 0) + m[12:qend], a)
PYEOF
pids+=($!)
for _ in $(seq 1 50); do [ -s "$T/dnsport" ] && break; sleep 0.1; done
P_DNS=$(cat "$T/dnsport")
dprobe="nslookup allowed.test; nslookup other.test; nslookup rebind.test
for d in 93.184.216.34 93.184.216.35 169.254.169.254; do printf x | nc -w 3 \$d 80 >/dev/null 2>&1; done; echo probed"
kr -v --net user,egress=none --allow-domain allowed.test --allow-domain rebind.test --dns "127.0.0.1:$P_DNS" -- sh -c "$dprobe"
if [ "$rc" = 0 ] && grep -q "Address: 93.184.216.34" "$T/out" && grep -q "can't find other.test: NXDOMAIN" "$T/out" &&
	grep -q "TCP 93.184.216.35:80 denied" "$T/err" && grep -q "TCP 169.254.169.254:80 denied" "$T/err" &&
	! grep -q "93.184.216.34:80 denied" "$T/err" && grep -q "rebind.test answered with 169.254.169.254" "$T/err"; then
	pass "egress=none --allow-domain allowed.test --dns 127.0.0.1:$P_DNS: the name resolves and its address is reachable; another address, a name off the list (NXDOMAIN) and a name answering 169.254.169.254 (rebinding) are not$E"
else
	fail "--allow-domain" "exit $rc: $(oneline "$T/out") $(grep -v vhost-user "$T/err" | tr '\n' ' ' | cut -c1-400)"
fi
kr --net user --dns "127.0.0.1:$P_DNS" -- sh -c "nslookup other.test"
grep -q "Address: 93.184.216.35" "$T/out" && pass "--net user --dns 127.0.0.1:$P_DNS: the guest's resolver is that server$E" ||
	fail "--dns" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
check "--dns with a bad address" 2 "dns=" -- run --net user --dns 1.2.3 -- true
check "--allow-domain with a bad name" 2 "domains=" -- run --net user --allow-domain 'a..b' -- true

# --- kiln ps lists a started sandbox's published ports ---
KILN_TEST_LIMIT=120 run_kiln "$T/out" "$T/err" -- start --name netps --net user -p "$hp:80" -p "127.0.0.1:$hp:53/udp"
if [ "$rc" = 0 ]; then
	run_kiln "$T/out" "$T/err" -- ps
	grep -q "^netps .*running  127.0.0.1:$hp->80/tcp, 127.0.0.1:$hp->53/udp  net tx=[0-9]* denied=0 rx=[0-9]* dropped=[0-9]*$" "$T/out" &&
		pass "kiln ps lists netps's published ports and its card's counters$E" || fail "kiln ps ports" "$(oneline "$T/out")"
	run_kiln "$T/out" "$T/err" -- stop netps
else
	fail "kiln start --net user -p" "exit $rc: $(oneline "$T/err")"
fi

# --- IPv6 through the NAT, and the policy on it ---
"$PY" - >"$T/v6port" 2>"$T/v6.log" <<'PYEOF' &
import socket
s = socket.socket(socket.AF_INET6); s.bind(("::1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"hello over IPv6\n"); c.close()
PYEOF
pids+=($!)
for _ in $(seq 1 50); do [ -s "$T/v6port" ] && break; sleep 0.1; done
P6=$(cat "$T/v6port")
v6wait='for i in $(seq 1 20); do ip -6 addr show eth0 | grep -q "inet6 fec0::" && break; sleep 0.3; done'
kr --net user,egress=all -- sh -c "$v6wait; ip -6 addr show eth0 | grep -o 'inet6 fec0::[0-9a-f:]*'; nc -w 5 fec0::2 $P6"
if [ "$rc" = 0 ] && grep -q "inet6 fec0::5054:ff:fe12:3456" "$T/out" && grep -q "hello over IPv6" "$T/out"; then
	pass "IPv6: the guest has fec0::5054:ff:fe12:3456/64 from the NAT and reaches the host's [::1]:$P6 as fec0::2 (egress=all)$E"
else
	fail "IPv6 through the NAT" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
fi
kr -v --net user -- sh -c "$v6wait; t0=\$(cut -d' ' -f1 /proc/uptime); if nc -w 5 fec0::2 $P6 </dev/null; then echo reached; else echo refused; fi; t1=\$(cut -d' ' -f1 /proc/uptime); echo ms=\$(awk \"BEGIN{print int((\$t1 - \$t0) * 1000)}\")"
ms=$(sed -n 's/^ms=//p' "$T/out")
if [ "$rc" = 0 ] && grep -q "^refused" "$T/out" && [ -n "$ms" ] && [ "$ms" -lt 3000 ] &&
	grep -q "TCP \[fec0::2\]:$P6 denied" "$T/err"; then
	pass "IPv6: the public posture refuses the host alias fec0::2 at once ($ms ms), logged$E"
else
	fail "IPv6 policy" "exit $rc: $(oneline "$T/out") $(grep -v vhost-user "$T/err" | tr '\n' ' ' | cut -c1-300)"
fi

# --- cluster networks ---
check "network create with a bad name" 2 "is not a network name" -- network create 'a/b'
check "network create with a bad subnet" 2 "expected an IPv4 network" -- network create x --subnet 10.1.2.3
check "network create on the NAT's subnet" 2 "overlaps 10.0.2.0/24" -- network create x --subnet 10.0.0.0/16
check "--network naming no network" 2 "no network named 'nosuch'" -- run --network nosuch -- true
run_kiln "$T/out" "$T/err" -- network create clu
run_kiln "$T/out2" "$T/err2" -- network ls
if [ "$rc" = 0 ] && grep -q "^clu  *10.89.0.0/24  *0  running" "$T/out2"; then
	pass "kiln network create clu: 10.89.0.0/24, listed, its switch running"
else
	fail "kiln network create" "$(oneline "$T/err") $(oneline "$T/out2")"
fi
check "network create twice" 125 "a network named 'clu' exists" -- network create clu
check "network create overlapping another" 125 "overlaps that of network 'clu'" -- network create x --subnet 10.89.0.0/16
ks() { KILN_TEST_LIMIT=120 run_kiln "$T/s.out" "$T/s.err" -- start "$@"; }
ke() { KILN_TEST_LIMIT=60 run_kiln "$T/out" "$T/err" -- exec "$@"; }
ks --name ca --network clu && ks --name cb --network clu
if [ "$rc" = 0 ]; then
	ke ca -- sh -c 'hostname; ip -4 addr show eth0 | grep -o "inet [0-9./]*"; cat /etc/resolv.conf'
	ca_info=$(oneline "$T/out")
	# a server in cb; ca connects by name; then the other way round
	(KILN_TEST_LIMIT=60 run_kiln "$T/l1.out" "$T/l1.err" -- exec cb -- sh -c 'nc -l -p 7001') &
	l1=$!
	(KILN_TEST_LIMIT=60 run_kiln "$T/l2.out" "$T/l2.err" -- exec ca -- sh -c 'nc -l -p 7002') &
	l2=$!
	sleep 2
	ok1= ok2=
	for _ in $(seq 1 10); do
		ke ca -- sh -c 'echo from-ca | nc -w 5 cb 7001' && { ok1=1; break; }
		sleep 1
	done
	for _ in $(seq 1 10); do
		ke cb -- sh -c 'echo from-cb | nc -w 5 ca 7002' && { ok2=1; break; }
		sleep 1
	done
	wait "$l1" "$l2"
	if [ -n "$ok1" ] && [ -n "$ok2" ] && grep -q from-ca "$T/l1.out" && grep -q from-cb "$T/l2.out" &&
		echo "$ca_info" | grep -q "^ca inet 10.89.0.2/24 nameserver 10.89.0.1"; then
		pass "cluster network: ca (10.89.0.2, hostname ca) and cb exchange TCP both ways by name$E"
	else
		fail "cluster TCP by name" "ca: $ca_info; $(oneline "$T/l1.out") / $(oneline "$T/l2.out") $(oneline "$T/err")"
	fi
	# not a member: neither by address (the NAT's policy) nor by name
	kr --net user -- sh -c 'if echo x | nc -w 3 10.89.0.3 7001; then echo reached; else echo refused; fi; nslookup cb 2>&1 | tail -1'
	if [ "$rc" = 0 ] && grep -q "^refused" "$T/out" && ! grep -q "10.89.0.3$" "$T/out"; then
		pass "a sandbox not on the network (--net user) reaches neither member's address nor its name$E"
	else
		fail "non-member isolation" "exit $rc: $(oneline "$T/out")"
	fi
	run_kiln "$T/out" "$T/err" -- network inspect clu
	grep -q "^ca  *10.89.0.2 " "$T/out" && grep -q "^cb  *10.89.0.3 " "$T/out" &&
		pass "kiln network inspect clu lists ca and cb with their addresses" ||
		fail "network inspect" "$(oneline "$T/out") $(oneline "$T/err")"
	check "network rm with members" 125 "has 2 members" -- network rm clu
	# a member dies: the other and the switch go on, a newcomer talks
	kill -9 "$(cut -d' ' -f1 "$XDG_RUNTIME_DIR/kiln/ca/info")" 2>/dev/null
	for _ in $(seq 1 50); do
		run_kiln "$T/out" "$T/err" -- network inspect clu
		grep -q "^ca " "$T/out" || break
		sleep 0.2
	done
	(KILN_TEST_LIMIT=60 run_kiln "$T/l3.out" "$T/l3.err" -- exec cb -- sh -c 'nc -l -p 7003') &
	l3=$!
	sleep 2
	kr --network clu --name cd -- sh -c 'for i in 1 2 3 4 5; do echo from-cd | nc -w 5 cb 7003 && break; sleep 1; done'
	wait "$l3"
	if ! grep -q "^ca " "$T/out" && [ "$rc" = 0 ] && grep -q from-cd "$T/l3.out"; then
		pass "killing member ca: the switch drops it, cb and the switch keep working (kiln run --network clu --name cd reached cb)$E"
	else
		fail "member death" "exit $rc: $(oneline "$T/l3.out") $(oneline "$T/err")"
	fi
	run_kiln "$T/out" "$T/err" -- stop ca cb
	run_kiln "$T/out" "$T/err" -- network rm clu
	run_kiln "$T/out2" "$T/err2" -- network ls
	[ "$rc" = 0 ] && ! grep -q "^clu" "$T/out2" && pass "kiln network rm clu: gone once its members are" ||
		fail "network rm" "$(oneline "$T/err") $(oneline "$T/out2")"
else
	fail "kiln start --network clu" "exit $rc: $(oneline "$T/s.err")"
	run_kiln "$T/out" "$T/err" -- stop ca cb
	run_kiln "$T/out" "$T/err" -- network rm --force clu
fi
exit 0
