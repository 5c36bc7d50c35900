#!/usr/bin/env bash
# virtio-blk benchmark (not a timed test): kiln's virtqueue + blk device on a
# raw file vs plain pread of the same file, page cache warm, same offsets in
# the same order; optionally device-side instructions per chain (callgrind).
#   BLK_IMAGE_MIB (256)  image size    BLK_DIR ($BUILD/bench)  where it lives
#   ROUNDS (7)           timed rounds  CALLGRIND (1)           0 to skip
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DIR=${BLK_DIR:-$BUILD/bench}
MIB=${BLK_IMAGE_MIB:-256}
ROUNDS=${ROUNDS:-7}
BIN=$BUILD/bench/blk
IMG=$DIR/blk.img

[ -f "$BUILD/libkiln-internal.a" ] || make -j1 "$BUILD/libkiln-internal.a"
mkdir -p "$BUILD/bench" "$DIR"
cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Iinclude -Isrc \
	-o "$BIN" bench/blk.c "$BUILD/libkiln-internal.a" -pthread -lslirp -lz -lcurl -luring

# Real data, not a sparse file: holes would skip the page cache copy.
if [ ! -f "$IMG" ] || [ "$(stat -c %s "$IMG")" -ne $((MIB << 20)) ]; then
	head -c $((MIB << 20)) /dev/urandom >"$IMG.tmp"
	mv "$IMG.tmp" "$IMG"
fi

"$BIN" --rounds "$ROUNDS" "$IMG"

# 4 KiB random reads, 32 in flight: kiln's asynchronous disk (io_uring, or
# its workers with KILN_IO_URING=0) against fio (io_uring, iodepth 32) on
# the same file, page cache warm, the same number of reads, best of 3 each.
if command -v fio >/dev/null; then
	N=200000
	best() { sort -n | tail -1; }
	k=$(for _ in 1 2 3; do "$BIN" --qd32 $N "$IMG"; done | best)
	w=$(for _ in 1 2 3; do KILN_IO_URING=0 "$BIN" --qd32 $N "$IMG"; done | best)
	f=$(for _ in 1 2 3; do
		fio --name=qd32 --filename="$IMG" --readonly --invalidate=0 --rw=randread --bs=4k --iodepth=32 \
			--ioengine=io_uring --number_ios=$N --size="$(stat -c %s "$IMG")" \
			--output-format=json 2>/dev/null |
			/usr/bin/python3 -c 'import json,sys; print(int(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
	done | best)
	awk -v k="$k" -v w="$w" -v f="$f" 'BEGIN {
		printf "blk 4KiB rand read, 32 in flight: kiln io_uring %d IOPS, kiln workers %d IOPS, fio io_uring %d IOPS; ratio %.2f and %.2f (target >= 0.8)\n", k, w, f, k / f, w / f }'
else
	echo "blk 4KiB rand read, 32 in flight: fio not installed (scripts/install-deps.sh)"
fi

if [ "${CALLGRIND:-1}" != 0 ] && command -v valgrind >/dev/null &&
	command -v callgrind_annotate >/dev/null; then
	N=20000
	T=$(mktemp -d)
	trap 'rm -rf "$T"' EXIT
	# Only what runs inside the device's queue_notify counts (user space:
	# pop, parse, check, preadv wrapper, push); the driver side does not.
	valgrind --tool=callgrind --toggle-collect=blk_queue_notify \
		--callgrind-out-file="$T/cg.out" "$BIN" --callgrind $N "$IMG" \
		>/dev/null 2>"$T/log" || { cat "$T/log" >&2; exit 1; }
	IR=$(callgrind_annotate "$T/cg.out" 2>/dev/null |
		awk '/PROGRAM TOTALS/ && !n++ { gsub(",", "", $1); print $1 }')
	if [ -n "$IR" ]; then
		echo "instructions per chain: $((IR / N)) (device side, user space, 4 KiB reads, $N chains)"
	else
		echo "instructions per chain: unavailable (callgrind_annotate gave no totals)"
	fi
fi
