#!/usr/bin/env bash
# HTTP disk benchmark (not a timed test): a 256 MiB raw image on a loopback
# HTTP server (Python, with ranges), read start to end through kiln's HTTP
# backend (build/tests/blktool opens it as the virtio-blk device does) with
# an empty cache (cold: range requests) and again (warm: the cache under
# $XDG_CACHE_HOME/kiln/blocks), against curl downloading the same file to
# a file beside it (both write the image to disk once)
# from the same server in the same run. Prints ratios.
#   MIB (256)  ROUNDS (3)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MIB=${MIB:-256}
ROUNDS=${ROUNDS:-3}
BT=$BUILD/tests/blktool
[ -x "$BT" ] || make -s "$BT" || exit 1
command -v curl >/dev/null || { echo "SKIP: curl missing"; exit 0; }
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$T"' EXIT
head -c $((MIB << 20)) /dev/urandom >"$T/disk.img"
/usr/bin/python3 - "$T" >"$T/port" 2>/dev/null <<'PY' &
import http.server, os, sys
path = os.path.join(sys.argv[1], "disk.img")
data = open(path, "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, body):
        rng = self.headers.get("Range")
        if rng:
            a, b = rng.split("=")[1].split("-"); a, b = int(a), min(int(b), len(data) - 1)
            self.send_response(206); self.send_header("Content-Range", f"bytes {a}-{b}/{len(data)}"); part = memoryview(data)[a:b + 1]
        else:
            self.send_response(200); part = memoryview(data)
        self.send_header("ETag", '"bench"'); self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(part))); self.end_headers()
        if body: self.wfile.write(part)
    def do_HEAD(self): self.reply(False)
    def do_GET(self): self.reply(True)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
for _ in $(seq 1 100); do [ -s "$T/port" ] && break; sleep 0.1; done
U=http://127.0.0.1:$(cat "$T/port")/disk.img
now() { date +%s.%N; }
for r in $(seq "$ROUNDS"); do
	export XDG_CACHE_HOME=$T/cache.$r
	s=$(now); curl -s -o "$T/dl.img" "$U"; e=$(now); rm -f "$T/dl.img"; echo "curl $(echo "$e - $s" | bc)" >>"$T/res"
	s=$(now); "$BT" "$U" read >/dev/null; e=$(now); echo "cold $(echo "$e - $s" | bc)" >>"$T/res"
	s=$(now); "$BT" "$U" read >/dev/null; e=$(now); echo "warm $(echo "$e - $s" | bc)" >>"$T/res"
done
med() { awk -v k="$1" '$1 == k {print $2}' "$T/res" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
awk -v c="$(med curl)" -v k="$(med cold)" -v w="$(med warm)" -v m="$MIB" 'BEGIN {
	printf "http disk, %d MiB sequential (loopback, median of '"$ROUNDS"'): curl %.0f MiB/s, kiln cold %.0f MiB/s (ratio %.2f), kiln warm (cache) %.0f MiB/s (ratio %.2f)\n", m, m / c, m / k, c / k, m / w, c / w }'
