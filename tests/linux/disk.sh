#!/usr/bin/env bash
# Disk tier: qcow2 images and snapshot overlays through kiln's block layer,
# checked against QEMU's own tools (Debian's qemu-utils):
#   images qemu-img makes (version 3 and 2, compressed, 4 KiB clusters, a
#     backing chain with a relative name, zero clusters) read byte-exact
#     against `qemu-img convert -O raw` (build/tests/blktool opens them as
#     the virtio-blk device does);
#   kiln's writes to qcow2 (unaligned, across clusters, write-zeroes, onto
#     compressed clusters and over a backing file) leave `qemu-img check`
#     clean and `qemu-img compare` equal to the same writes on a raw copy;
#   refused with a clear error: a backing chain loop, extended L2 entries,
#     an external data file, a broken header; format= forces a format;
#   ,snapshot: the base stays byte-identical;
#   the Linux driver (kiln run, whichever engine runs here) writes a qcow2
#     image (qemu-img check clean, the guest's view equal to qemu-img's),
#     reads a compressed one, and writes through ,snapshot without touching
#     the base, and a FLUSH then kill -9 of the VMM loses nothing flushed;
#   HTTP images (a loopback python server with ranges and ETags): read
#     byte-exact, then from the persistent cache; refused without range
#     support, 404, qcow2, plain http elsewhere; an object changed mid-run
#     is an error; the Linux driver reads it (read-only) and writes through
#     ,snapshot; a server that is gone is a clear error;
#     bad --disk options are usage errors.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/harness.sh

T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-disk.XXXXXX")
export XDG_RUNTIME_DIR=$T/run
mkdir -m 0700 "$XDG_RUNTIME_DIR"
trap '"$KILN" stop dk dh >/dev/null 2>&1; kill $(jobs -p) 2>/dev/null; rm -rf "$T"' EXIT
oneline() { tr '\n' ' ' <"$1" | cut -c1-300; }
BT=$BUILD/tests/blktool

check "--disk with an unknown format" 2 "format=vmdk: expected raw, qcow2" -- run --disk /nonexistent,format=vmdk -- true
if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
	skip "qcow2 interop" "qemu-img/qemu-io are not installed (qemu-utils; scripts/install-deps.sh)"
	exit 0
fi
if [ ! -x "$BT" ]; then
	fail "disk tier" "$BT is not built"
	exit 0
fi

# --- a base with data, holes and zeros: 8 MiB ---
head -c $((8 << 20)) /dev/urandom >"$T/base.raw"
dd if=/dev/zero of="$T/base.raw" bs=64k seek=20 count=16 conv=notrunc status=none
printf 'compressible %.0s' $(seq 1 20000) | dd of="$T/base.raw" bs=64k seek=40 conv=notrunc status=none
qi() { qemu-img "$@" >"$T/qi.log" 2>&1 || { echo "qemu-img $*: $(oneline "$T/qi.log")"; return 1; }; }
ok=1
qi convert -f raw -O qcow2 "$T/base.raw" "$T/v3.qcow2" || ok=
qi convert -f raw -O qcow2 -o compat=0.10 "$T/base.raw" "$T/v2.qcow2" || ok=
qi convert -c -f raw -O qcow2 "$T/base.raw" "$T/comp.qcow2" || ok=
qi convert -f raw -O qcow2 -o cluster_size=4096 "$T/base.raw" "$T/small.qcow2" || ok=
# a chain: top -> mid (relative names) -> v3; zero clusters and new data
mkdir "$T/chain"
cp "$T/v3.qcow2" "$T/chain/base.qcow2"
(cd "$T/chain" && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 &&
	qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 &&
	qemu-io -c "write -P 0x5a 1M 100k" -c "write -z 3M 256k" mid.qcow2 &&
	qemu-io -c "write -P 0xa5 1050k 8k" -c "write -z 5000k 64k" top.qcow2) >"$T/qi.log" 2>&1 || {
	ok=
	echo "chain: $(oneline "$T/qi.log")"
}
if [ -z "$ok" ]; then
	fail "qcow2 test images" "qemu-img could not make them"
	exit 0
fi

for img in v3.qcow2 v2.qcow2 comp.qcow2 small.qcow2 chain/top.qcow2 chain/mid.qcow2; do
	qemu-img convert -O raw "$T/$img" "$T/want.raw"
	if "$BT" "$T/$img,ro" read >"$T/got.raw" 2>"$T/err" && cmp -s "$T/want.raw" "$T/got.raw"; then
		pass "qcow2 read: $img byte-exact against qemu-img convert -O raw"
	else
		fail "qcow2 read $img" "$(oneline "$T/err") $(cmp "$T/want.raw" "$T/got.raw" 2>&1 | head -1)"
	fi
done

# --- kiln writes; qemu-img checks ---
/usr/bin/python3 - "$T/ops" <<'EOF'
import random, sys
r = random.Random(7)
size = 8 << 20
with open(sys.argv[1], "w") as f:
    for i in range(300):
        off = r.randrange(0, size - 1)
        n = min(r.choice([1, 511, 512, 4096, 65536, 65537, 200000]), size - off)
        f.write(f"w {off} {n} {i}\n")
        if i % 37 == 0:
            zo = r.randrange(0, size - 70000)
            f.write(f"z {zo} {r.choice([512, 65536, 70000])}\n")
        if i % 23 == 0:  # whole clusters, some unmapped: zero flags in v3
            zo = r.randrange(0, (size >> 16) - 4) << 16
            f.write(f"{r.choice('zZ')} {zo} {r.choice([65536, 196608])}\n")
        if i % 50 == 0:
            f.write("f\n")
EOF
for img in v3.qcow2 v2.qcow2 comp.qcow2 small.qcow2 chain/top.qcow2; do
	cp "$T/$img" "$T/w.qcow2"
	[ "$img" = chain/top.qcow2 ] && { rm "$T/w.qcow2"; cp -r "$T/chain" "$T/wchain"; }
	w=$T/w.qcow2
	[ "$img" = chain/top.qcow2 ] && w=$T/wchain/top.qcow2
	qemu-img convert -O raw "$w" "$T/w.raw"
	if "$BT" "$w" ops "$T/ops" 2>"$T/err" && "$BT" "$T/w.raw,format=raw" ops "$T/ops" 2>>"$T/err" &&
		qemu-img check -q "$w" >"$T/check" 2>&1 && qemu-img compare -q "$w" "$T/w.raw" >>"$T/check" 2>&1; then
		pass "qcow2 write: 300 writes and write-zeroes on $img: qemu-img check clean, equal to the same writes on raw"
	else
		fail "qcow2 write $img" "$(oneline "$T/err") $(oneline "$T/check")"
	fi
	rm -rf "$T/wchain" "$T/w.qcow2"
done

# --- refusals ---
refused() { # NAME PATTERN IMG
	if ! "$BT" "$3,ro" read >/dev/null 2>"$T/err" && grep -q -- "$2" "$T/err"; then
		pass "qcow2 refused: $1"
	else
		fail "qcow2 refusal $1" "$(oneline "$T/err")"
	fi
}
qemu-img create -q -f qcow2 "$T/la.qcow2" 1M && qemu-img create -q -f qcow2 -b la.qcow2 -F qcow2 "$T/lb.qcow2" &&
	qemu-img rebase -q -u -b lb.qcow2 -F qcow2 "$T/la.qcow2" && refused "a backing chain loop" "loops back" "$T/lb.qcow2"
qemu-img create -q -f qcow2 -o extended_l2=on "$T/ext.qcow2" 1M && refused "extended L2 entries" "extended L2" "$T/ext.qcow2"
qemu-img create -q -f qcow2 -o data_file="$T/ext.data" "$T/data.qcow2" 1M && refused "an external data file" "external data file" "$T/data.qcow2"
cp "$T/v3.qcow2" "$T/bad.qcow2"
printf '\x00\x00\x00\x1e' | dd of="$T/bad.qcow2" bs=1 seek=20 conv=notrunc status=none
refused "cluster_bits 30" "cluster_bits 30" "$T/bad.qcow2"
cp "$T/v3.qcow2" "$T/bad.qcow2"
printf '\x00\x00\x00\x00\x00\x01\x00\x08' | dd of="$T/bad.qcow2" bs=1 seek=40 conv=notrunc status=none
refused "an unaligned L1 table" "broken L1 table" "$T/bad.qcow2"
# format=raw reads the qcow2 file as bytes; format=qcow2 refuses a raw one
if "$BT" "$T/v3.qcow2,ro,format=raw" read | cmp -s - "$T/v3.qcow2" &&
	! "$BT" "$T/base.raw,ro,format=qcow2" read >/dev/null 2>"$T/err" && grep -q "not a qcow2 image" "$T/err"; then
	pass "format= forces a format (never the name): a qcow2 file as raw bytes, a raw file refused as qcow2"
else
	fail "format=" "$(oneline "$T/err")"
fi

# --- snapshot: the base never changes ---
cp "$T/v3.qcow2" "$T/s.qcow2"
before=$(md5sum <"$T/s.qcow2")
before_raw=$(md5sum <"$T/base.raw")
if "$BT" "$T/s.qcow2,snapshot" ops "$T/ops" 2>"$T/err" && "$BT" "$T/base.raw,snapshot" ops "$T/ops" 2>>"$T/err" &&
	[ "$(md5sum <"$T/s.qcow2")" = "$before" ] && [ "$(md5sum <"$T/base.raw")" = "$before_raw" ]; then
	pass "snapshot: 300 writes through the overlay leave a qcow2 and a raw base byte-identical"
else
	fail "snapshot base" "$(oneline "$T/err")"
fi

# --- HTTP images: a loopback server with ranges (and one without) ---
mkdir "$T/www"
head -c $((6 << 20)) /dev/urandom >"$T/www/disk.img"
cp "$T/v3.qcow2" "$T/www/q.qcow2"
export XDG_CACHE_HOME=$T/cache
/usr/bin/python3 - "$T/www" >"$T/http.port" 2>"$T/http.log" <<'EOF' &
import email.utils, http.server, os, sys, threading
root = sys.argv[1]
hits = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def send_file(self, body):
        path = os.path.join(root, self.path.lstrip("/").split("?")[0])
        if self.path == "/hits":
            b = str(hits["n"]).encode(); self.send_response(200)
            self.send_header("Content-Length", str(len(b))); self.end_headers()
            if body: self.wfile.write(b)
            return
        if not os.path.isfile(path):
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers(); return
        st = os.stat(path); data = open(path, "rb").read()
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        if self.path.startswith("/norange/"):
            rng = None
        else:
            rng = self.headers.get("Range")
        im = self.headers.get("If-Match")
        if im and im != etag:
            self.send_response(412); self.send_header("Content-Length", "0"); self.end_headers(); return
        if rng and body:
            hits["n"] += 1
            a, b = rng.split("=")[1].split("-"); a, b = int(a), min(int(b), len(data) - 1)
            self.send_response(206); self.send_header("Content-Range", f"bytes {a}-{b}/{len(data)}")
            part = data[a:b + 1]
        else:
            self.send_response(200); part = data
        self.send_header("ETag", etag)
        if not self.path.startswith("/norange/"):
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(part))); self.end_headers()
        if body: self.wfile.write(part)
    def do_HEAD(self): self.send_file(False)
    def do_GET(self): self.send_file(True)
os.makedirs(os.path.join(root, "norange"), exist_ok=True)
os.link(os.path.join(root, "disk.img"), os.path.join(root, "norange", "disk.img"))
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
httpd=$!
for _ in $(seq 1 50); do [ -s "$T/http.port" ] && break; sleep 0.1; done
U=http://127.0.0.1:$(cat "$T/http.port")
hits() { curl -s "$U/hits"; }
if "$BT" "$U/disk.img" read >"$T/got.raw" 2>"$T/err" && cmp -s "$T/got.raw" "$T/www/disk.img"; then
	h1=$(hits)
	"$BT" "$U/disk.img" read | cmp -s - "$T/www/disk.img" && h2=$(hits)
	if [ "${h2:-x}" = "$h1" ] && ls "$XDG_CACHE_HOME/kiln/blocks/"*.data >/dev/null 2>&1; then
		pass "http disk: 6 MiB over range requests byte-exact ($h1 requests), read again from the cache under \$XDG_CACHE_HOME/kiln/blocks (0 more)"
	else
		fail "http disk cache" "requests $h1 then ${h2:-?}"
	fi
else
	fail "http disk read" "$(oneline "$T/err") $(cmp "$T/got.raw" "$T/www/disk.img" 2>&1 | head -1)"
fi
hrefused() { # NAME PATTERN SPEC
	if ! timeout 60 "$BT" "$3" read >/dev/null 2>"$T/err" && grep -q -- "$2" "$T/err"; then
		pass "http disk refused: $1"
	else
		fail "http disk refusal $1" "$(oneline "$T/err")"
	fi
}
hrefused "a server without range requests" "does not support range requests" "$U/norange/disk.img"
hrefused "a missing object" "404" "$U/nosuch.img"
hrefused "a qcow2 image" "is a qcow2 image" "$U/q.qcow2"
hrefused "plain http to another host" "plain http only to this host's loopback" "http://192.0.2.1/disk.img"
if ! "$BT" "$U/disk.img" write 0 512 1 2>"$T/err" && grep -q "Read-only file system" "$T/err"; then
	pass "http disk refused: writing without snapshot"
else
	fail "http disk write" "$(oneline "$T/err")"
fi
printf 'r 0 4096\ns 2\nr 5242880 4096\n' >"$T/hops"
rm -rf "$XDG_CACHE_HOME"
("$BT" "$U/disk.img" ops "$T/hops" >"$T/out" 2>"$T/err"; echo "rc=$?" >>"$T/out") &
bt=$!
sleep 1
touch -d '2001-01-01' "$T/www/disk.img"
wait "$bt"
if grep -q "rc=1" "$T/out" && grep -q "changed on the server" "$T/err"; then
	pass "http disk: an object changed mid-run fails the read (If-Match), never mixes two versions"
else
	fail "http disk changed" "$(oneline "$T/out") $(oneline "$T/err")"
fi

# --- the Linux driver ---
if [ ! -f "$BUILD/guest/initramfs.cpio.gz" ]; then
	fail "disk: Linux driver" "no default guest in $BUILD/guest (make guest)"
	exit 0
fi
. tests/lib/engine.sh
ENGINE=$(engine_here)
if [ -z "$ENGINE" ]; then
	skip "disk: the Linux driver on qcow2 and snapshot disks" "$(engine_none_reason)"
	exit 0
fi
E=" [$ENGINE]"
kr() { KILN_TEST_LIMIT=180 run_kiln "$T/out" "$T/err" -- run "$@"; }
cp "$T/comp.qcow2" "$T/g.qcow2"
kr --disk "$T/g.qcow2" -- sh -c 'dd if=/dev/urandom of=/dev/vda bs=4k seek=7 count=300 conv=fsync 2>/dev/null &&
	dd if=/dev/urandom of=/dev/vda bs=1M seek=6 count=1 conv=fsync 2>/dev/null && sync && md5sum </dev/vda'
guest=$(cut -d' ' -f1 "$T/out")
qemu-img convert -O raw "$T/g.qcow2" "$T/g.raw" 2>/dev/null
if [ "$rc" = 0 ] && qemu-img check -q "$T/g.qcow2" >"$T/check" 2>&1 && [ -n "$guest" ] &&
	[ "$(md5sum <"$T/g.raw" | cut -d' ' -f1)" = "$guest" ]; then
	pass "the Linux driver wrote a compressed qcow2 through kiln: qemu-img check clean, qemu-img's view equals the guest's$E"
else
	fail "Linux driver on qcow2" "exit $rc: guest $guest, $(oneline "$T/check") $(oneline "$T/err")"
fi
qemu-img convert -O raw "$T/chain/top.qcow2" "$T/top.raw"
want=$(md5sum <"$T/top.raw" | cut -d' ' -f1)
kr --disk "$T/chain/top.qcow2,ro" -- sh -c 'md5sum </dev/vda'
[ "$rc" = 0 ] && [ "$(cut -d' ' -f1 "$T/out")" = "$want" ] &&
	pass "the Linux driver reads a qcow2 backing chain byte-exact (ro)$E" ||
	fail "Linux driver on a chain" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
before=$(md5sum <"$T/base.raw")
kr --disk "$T/base.raw,snapshot" -- sh -c 'md5sum </dev/vda; dd if=/dev/urandom of=/dev/vda bs=64k count=16 conv=fsync 2>/dev/null; md5sum </dev/vda'
if [ "$rc" = 0 ] && [ "$(md5sum <"$T/base.raw")" = "$before" ] && [ "$(sed -n 1p "$T/out" | cut -d' ' -f1)" = "$(cut -d' ' -f1 <<<"$before")" ] &&
	[ "$(sed -n 2p "$T/out")" != "$(sed -n 1p "$T/out")" ]; then
	pass "--disk base.raw,snapshot: the guest sees its writes, the base is byte-identical after$E"
else
	fail "--disk ,snapshot" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
fi
# FLUSH, then the VMM killed: nothing the guest had flushed is lost
cp "$T/v3.qcow2" "$T/k.qcow2"
KILN_TEST_LIMIT=120 run_kiln "$T/out" "$T/err" -- start --name dk --disk "$T/k.qcow2"
if [ "$rc" = 0 ]; then
	KILN_TEST_LIMIT=60 run_kiln "$T/out" "$T/err" -- exec dk -- sh -c \
		'dd if=/dev/urandom of=/tmp/p bs=64k count=40 2>/dev/null && dd if=/tmp/p of=/dev/vda bs=64k seek=50 conv=fsync 2>/dev/null && md5sum </tmp/p'
	want=$(cut -d' ' -f1 "$T/out")
	kill -9 "$(cut -d' ' -f1 "$XDG_RUNTIME_DIR/kiln/dk/info")" 2>/dev/null
	sleep 1
	qemu-img convert -O raw "$T/k.qcow2" "$T/k.raw" 2>/dev/null
	got=$(dd if="$T/k.raw" bs=64k skip=50 count=40 2>/dev/null | md5sum | cut -d' ' -f1)
	if [ -n "$want" ] && [ "$got" = "$want" ] && qemu-img check -q "$T/k.qcow2" >"$T/check" 2>&1; then
		pass "qcow2: the guest's flushed writes survive kill -9 of the VMM, qemu-img check clean$E"
	else
		fail "qcow2 flush then kill" "guest $want, image $got: $(oneline "$T/check") $(oneline "$T/err")"
	fi
	run_kiln "$T/out" "$T/err" -- stop dk
else
	fail "kiln start --disk qcow2" "exit $rc: $(oneline "$T/err")"
fi
want=$(md5sum <"$T/www/disk.img" | cut -d' ' -f1)
kr --disk "$U/disk.img" -- sh -c 'md5sum </dev/vda; if printf x | dd of=/dev/vda conv=fsync 2>/dev/null; then echo wrote; else echo refused; fi'
if [ "$rc" = 0 ] && [ "$(sed -n 1p "$T/out" | cut -d' ' -f1)" = "$want" ] && grep -q refused "$T/out"; then
	pass "the Linux driver reads an http disk byte-exact; without snapshot it is read-only$E"
else
	fail "Linux driver on an http disk" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
fi
kr --disk "$U/disk.img,snapshot" -- sh -c 'printf CHANGED | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null; head -c 7 /dev/vda'
[ "$rc" = 0 ] && grep -q "^CHANGED" "$T/out" && [ "$(md5sum <"$T/www/disk.img" | cut -d' ' -f1)" = "$want" ] &&
	pass "--disk URL,snapshot: the guest writes to its overlay, the served image unchanged$E" ||
	fail "http disk snapshot" "exit $rc: $(oneline "$T/out") $(oneline "$T/err")"
# the server gone mid-run: the guest gets I/O errors for what was never
# fetched, and the VM goes on
rm -rf "$XDG_CACHE_HOME"
KILN_TEST_LIMIT=120 run_kiln "$T/out" "$T/err" -- start --name dh --disk "$U/disk.img"
if [ "$rc" = 0 ]; then
	KILN_TEST_LIMIT=60 run_kiln "$T/out" "$T/err" -- exec dh -- dd if=/dev/vda of=/dev/null bs=4k count=1 iflag=direct
	kill "$httpd" 2>/dev/null
	wait "$httpd" 2>/dev/null
	t0=$(date +%s)
	KILN_TEST_LIMIT=90 run_kiln "$T/out" "$T/err" -- exec dh -- sh -c \
		'if dd if=/dev/vda of=/dev/null bs=4k skip=1280 count=1 iflag=direct 2>/dev/null; then echo read; else echo failed; fi; echo alive'
	t=$(($(date +%s) - t0))
	if [ "$rc" = 0 ] && grep -q "^failed" "$T/out" && grep -q "^alive" "$T/out"; then
		pass "http disk: the server stopped mid-run: the guest's read of an unfetched region fails ($t s, retries included), the VM goes on$E"
	else
		fail "http disk server stopped" "exit $rc after $t s: $(oneline "$T/out") $(oneline "$T/err")"
	fi
	run_kiln "$T/out" "$T/err" -- stop dh
else
	fail "kiln start --disk URL" "exit $rc: $(oneline "$T/err")"
	kill "$httpd" 2>/dev/null
fi
kr --disk "$U/disk.img" -- true
if [ "$rc" = 125 ] && grep -q "http disk" "$T/err"; then
	pass "an http disk whose server is gone: 125 before boot, saying so$E"
else
	fail "http disk server gone" "exit $rc: $(oneline "$T/err")"
fi
check "--disk a broken qcow2: 125, saying what is broken" 125 "a broken L1 table" -- run --disk "$T/bad.qcow2" -- true
exit 0
