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
#     bad --disk options are usage errors.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/harness.sh

T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-disk.XXXXXX")
export XDG_RUNTIME_DIR=$T/run
mkdir -m 0700 "$XDG_RUNTIME_DIR"
trap '"$KILN" stop dk >/dev/null 2>&1; rm -rf "$T"' EXIT
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
check "--disk a broken qcow2: 125, saying what is broken" 125 "a broken L1 table" -- run --disk "$T/bad.qcow2" -- true
exit 0
