#!/usr/bin/env bash
# vhost-user-blk benchmark (not a timed test): the same QEMU TCG microvm
# guest reads its disk through kiln's vhost-user server and through Debian's
# qemu-storage-daemon (the reference vhost-user-blk server), alternating, in
# one run: sequential 1 MiB direct reads and 4 KiB reads, as the guest's
# busybox dd reports them. TCG makes the guest slow, so this compares the two
# servers under the same front end rather than measuring the host's limit.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-3}
G=$BUILD/guest
[ -f "$G/vmlinux" ] || scripts/build-guest.sh "$G" >/dev/null || exit 1
command -v qemu-storage-daemon >/dev/null || { echo "SKIP: qemu-storage-daemon missing"; exit 0; }
T=$(mktemp -d)
pids=()
trap 'kill -KILL "${pids[@]}" 2>/dev/null; rm -rf "$T"' EXIT
IMG=$T/disk.img
head -c $((128 << 20)) /dev/urandom >"$IMG"

start_kiln() { "$BUILD/kiln" vhost-user --socket "$1" --device "blk,path=$IMG,ro" >/dev/null 2>&1 & pids+=($!); }
start_qsd() {
	qemu-storage-daemon --blockdev "driver=file,node-name=f0,filename=$IMG,read-only=on" \
		--blockdev driver=raw,node-name=d0,file=f0,read-only=on \
		--export "type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$1" >/dev/null 2>&1 &
	pids+=($!)
}

# run_guest SOCK: the guest's dd timings on SOCK (bench/lib.sh)
run_guest() {
	# 1 MiB reads: the whole disk 8 times (1 GiB); 4 KiB reads: 32 MiB
	blk_guest "$1" 180 'for bs in 1M:128:8 4k:8192:1; do n=${bs##*:}; b=${bs%:*}; s=$(cut -d" " -f1 /proc/uptime); while [ $n -gt 0 ]; do dd if=/dev/vda of=/dev/null bs=${b%:*} count=${b#*:} iflag=direct 2>/dev/null; n=$((n-1)); done; e=$(cut -d" " -f1 /proc/uptime); echo "RESULT $bs $s $e"; done; reboot -f'
}

for r in $(seq "$ROUNDS"); do
	for srv in kiln qsd; do
		sock=$T/$srv.$r.sock
		"start_$srv" "$sock"
		for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
		run_guest "$sock" | sed "s/^/$srv /" >>"$T/results"
		kill "${pids[-1]}" 2>/dev/null
		wait "${pids[-1]}" 2>/dev/null
	done
done
med() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for spec in "1M:128:1 GiB in 1 MiB direct reads" "4k:8192:32 MiB in 4 KiB direct reads"; do
	bs=${spec%%:*}
	k=$(awk -v b="$bs" '$1 == "kiln" && $2 ~ "^"b {print $3}' "$T/results" | med)
	q=$(awk -v b="$bs" '$1 == "qsd" && $2 ~ "^"b {print $3}' "$T/results" | med)
	desc=${spec#*:*:}
	awk -v d="$desc" -v k="$k" -v q="$q" 'BEGIN {printf "vhost-user-blk guest reads (%s, TCG guest), median of '"$ROUNDS"': kiln %.2f s, qemu-storage-daemon %.2f s, ratio qsd/kiln %.2f (>1: kiln faster)\n", d, k, q, q / k}'
done
