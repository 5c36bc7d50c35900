#!/usr/bin/env bash
# Disk formats benchmark (not a timed test): the same QEMU TCG microvm guest
# reads and writes its disk through vhost-user, alternating, in one run:
#   raw       kiln, a raw image
#   qcow2     kiln, the same data as qcow2 (qemu-img convert)
#   snapshot  kiln, the raw image behind a ,snapshot overlay
#   qsd       qemu-storage-daemon serving the same qcow2 file
# The guest reads 256 MiB in 1 MiB direct reads and 16 MiB in 4 KiB direct
# reads, then writes 64 MiB in 1 MiB direct writes (into clusters the
# image has not allocated yet: each round starts from fresh copies, synced,
# and with another kind first). TCG
# makes the guest slow, so this compares the servers under one front end.
#   ROUNDS (3)
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-3}
G=$BUILD/guest
[ -f "$G/vmlinux" ] || scripts/build-guest.sh "$G" >/dev/null || exit 1
for t in qemu-storage-daemon qemu-img; do
	command -v $t >/dev/null || { echo "SKIP: $t missing (qemu-utils, qemu-system-x86)"; exit 0; }
done
T=$(mktemp -d)
pids=()
trap 'kill -KILL "${pids[@]}" 2>/dev/null; rm -rf "$T"' EXIT
# 128 MiB of data, 64 MiB never written (sparse in raw, unallocated in qcow2)
head -c $((128 << 20)) /dev/urandom >"$T/base.raw"
truncate -s 192M "$T/base.raw"
qemu-img convert -f raw -O qcow2 "$T/base.raw" "$T/base.qcow2"

start() { # KIND SOCK
	case $1 in
	raw) "$BUILD/kiln" vhost-user --socket "$2" --device "blk,path=$T/img.raw" >/dev/null 2>&1 & ;;
	qcow2) "$BUILD/kiln" vhost-user --socket "$2" --device "blk,path=$T/img.qcow2" >/dev/null 2>&1 & ;;
	snapshot) "$BUILD/kiln" vhost-user --socket "$2" --device "blk,path=$T/img.raw,snapshot" >/dev/null 2>&1 & ;;
	qsd) qemu-storage-daemon --blockdev "driver=file,node-name=f0,filename=$T/img.qcow2" \
		--blockdev driver=qcow2,node-name=d0,file=f0 \
		--export "type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$2,writable=on" >/dev/null 2>&1 & ;;
	esac
	pids+=($!)
}

# the guest's timings on SOCK (bench/lib.sh)
run_guest() {
	blk_guest "$1" 300 'u() { cut -d" " -f1 /proc/uptime; }
s=$(u); dd if=/dev/vda of=/dev/null bs=1M count=256 iflag=direct 2>/dev/null; e=$(u); echo "RESULT read1M $s $e"
s=$(u); dd if=/dev/vda of=/dev/null bs=4k count=4096 iflag=direct 2>/dev/null; e=$(u); echo "RESULT read4k $s $e"
s=$(u); dd if=/dev/zero of=/dev/vda bs=1M seek=128 count=64 oflag=direct conv=fsync 2>/dev/null; e=$(u); echo "RESULT write1M $s $e"
reboot -f'
}

kinds=(raw qcow2 snapshot qsd)
for r in $(seq "$ROUNDS"); do
	# each round starts with another kind: none always runs last (after
	# the others' copies and writes left the most for writeback)
	for i in 0 1 2 3; do
		kind=${kinds[$(((i + r) % 4))]}
		cp --sparse=always "$T/base.raw" "$T/img.raw"
		cp "$T/base.qcow2" "$T/img.qcow2"
		sync
		sock=$T/$kind.$r.sock
		start "$kind" "$sock"
		for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
		run_guest "$sock" | sed "s/^/$kind /" >>"$T/results"
		kill "${pids[-1]}" 2>/dev/null
		wait "${pids[-1]}" 2>/dev/null
	done
done
med() { sort -n | awk '{a[NR]=$1} END {if (NR) print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; else print 0}'; }
t() { awk -v k="$1" -v w="$2" '$1 == k && $2 == w {print $3}' "$T/results" | med; }
for w in "read1M:256 MiB in 1 MiB direct reads" "read4k:16 MiB in 4 KiB direct reads" "write1M:64 MiB in 1 MiB direct writes, new clusters"; do
	what=${w%%:*}
	awk -v d="${w#*:}" -v raw="$(t raw "$what")" -v q="$(t qcow2 "$what")" -v s="$(t snapshot "$what")" -v qsd="$(t qsd "$what")" \
		'BEGIN {printf "disk %s (TCG guest, median of '"$ROUNDS"'): raw %.2f s, qcow2 %.2f s, snapshot %.2f s, qemu-storage-daemon qcow2 %.2f s; qcow2 vs raw %.2f (target >= 0.9), qcow2 vs qsd %.2f (target >= 1.0), snapshot vs raw %.2f\n", d, raw, q, s, qsd, (q > 0 ? raw / q : 0), (q > 0 ? qsd / q : 0), (s > 0 ? raw / s : 0)}'
done
