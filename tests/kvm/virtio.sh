#!/usr/bin/env bash
# KVM tier, virtio: tiny guests (tests/guests/virtio_*.c) drive kiln's
# virtio-mmio devices from inside the VM: a virtio-blk driver (writable and
# read-only disk, interrupt-driven completions), a hostile driver that the
# device must answer with DEVICE_NEEDS_RESET while kiln keeps running,
# the virtio-console transmit queue, and a virtio-net driver behind kiln's
# NAT (an ARP answered, a SYN to a private address answered with a RST).
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/harness.sh
# kiln's own vCPUs on /dev/kvm, never the emulating engine (tests/cli/accel.sh
# and the sandbox tiers cover engine selection)
export KILN_ACCEL=kvm

if [ ! -e /dev/kvm ]; then
	skip "virtio tier" "/dev/kvm is missing"
	exit 0
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export KILN_TEST_LIMIT=90

# Sector 0: a 16-byte marker, then zeros; the disk is 1 MiB (2048 sectors).
SECTOR0_MARK="KILN-SECTOR-ZERO"
SECTOR0_HEX=4b494c4e2d534543544f522d5a45524f
make_disk() {
	rm -f "$1"
	printf '%s' "$SECTOR0_MARK" >"$1"
	truncate -s 1M "$1"
}

# What virtio_blk writes to sector 1: byte i = (i * 7 + 0x5a) & 0xff.
expected_sector1_hex() {
	local i
	for ((i = 0; i < 512; i++)); do
		printf '%02x' $(((i * 7 + 0x5a) & 255))
	done
}
sector_hex() { # IMAGE SECTOR
	dd if="$1" bs=512 skip="$2" count=1 2>/dev/null | od -An -v -tx1 | tr -d ' \n'
}

# guest_lines OUT: the guest's output with CRs stripped, into $T/o
guest_lines() { tr -d '\r' <"$1" >"$T/o"; }
# why_missing LINE...: appends "; no 'LINE'" to $why for each absent line
why_missing() {
	local l
	for l in "$@"; do
		grep -qx -- "$l" "$T/o" || why="$why; no '$l'"
	done
}
report() { # NAME
	if [ -z "$why" ]; then
		pass "$1"
	else
		fail "$1" "${why#; }; guest: $(grep -E '^(FAIL|RESULT)' "$T/o" | head -5 | tr '\n' ' ')stderr: $(grep -v 'is PVM' "$T/err" | head -c 300)"
	fi
}

disk="$T/disk.img"

# --- virtio-blk, writable disk ---
make_disk "$disk"
run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/virtio_blk.bzimage" \
	--disk "$disk" --debug-exit --timeout 60
guest_lines "$T/out"
why=""
[ "$rc" -eq 0 ] || why="exit $rc"
why_missing "VBLK ok" "RESULT PASS" "VBLK sector0 $SECTOR0_HEX"
if ! grep -qE '^VBLK capacity=2048 irqs=[0-9]+$' "$T/o"; then
	why="$why; no 'VBLK capacity=2048 irqs=N'"
elif [ "$(sed -n 's/^VBLK capacity=2048 irqs=//p' "$T/o")" -lt 3 ]; then
	why="$why; fewer than 3 used-buffer interrupts"
fi
grep -qx "VBLK ro-refused" "$T/o" && why="$why; writable disk refused the write"
report "virtio-blk: guest driver writes, flushes and reads back (interrupts)"

expect "virtio-blk: the guest's write reached the image file" \
	"sector 1 is $(sector_hex "$disk" 1 | head -c 32)..." \
	[ "$(sector_hex "$disk" 1)" = "$(expected_sector1_hex)" ]
expect "virtio-blk: other sectors untouched" "sector 0 or 2 changed" \
	bash -c "[ \"\$(head -c 16 '$disk')\" = '$SECTOR0_MARK' ] &&
		[ \"\$(dd if='$disk' bs=512 skip=2 count=1 2>/dev/null | tr -d '\\0' | wc -c)\" -eq 0 ]"

# --- virtio-blk, read-only disk: the write must fail, the file stay as is ---
make_disk "$disk"
before=$(cksum <"$disk")
run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/virtio_blk.bzimage" \
	--disk "$disk,ro" --debug-exit --timeout 60
guest_lines "$T/out"
why=""
[ "$rc" -eq 0 ] || why="exit $rc"
why_missing "VBLK ro-refused" "VBLK ok" "RESULT PASS" "VBLK sector0 $SECTOR0_HEX"
report "virtio-blk: read-only disk refuses the write (IOERR), reads work"
expect "virtio-blk: read-only image file unchanged" "checksum changed" \
	[ "$before" = "$(cksum <"$disk")" ]

# --- hostile driver: NEEDS_RESET, frozen queue registers, loops, recovery ---
make_disk "$disk"
run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/virtio_hostile.bzimage" \
	--disk "$disk" --debug-exit --timeout 60
guest_lines "$T/out"
why=""
[ "$rc" -eq 0 ] || why="exit $rc"
why_missing "HOSTILE needs-reset ok" "HOSTILE frozen ok" "HOSTILE loop ok" \
	"HOSTILE recovered ok" "RESULT PASS"
report "virtio-blk: hostile driver (bad address, frozen queue config, descriptor loop, reset)"
expect "virtio-blk: hostile driver left the image file alone" "image changed" \
	bash -c "[ \"\$(head -c 16 '$disk')\" = '$SECTOR0_MARK' ] &&
		[ \"\$(tail -c +17 '$disk' | tr -d '\\0' | wc -c)\" -eq 0 ]"

# --- virtio-console transmit queue ---
run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/virtio_console.bzimage" \
	--debug-exit --timeout 60
guest_lines "$T/out"
why=""
[ "$rc" -eq 0 ] || why="exit $rc"
why_missing "VCON hello over virtio" "RESULT PASS"
report "virtio-console: transmit queue reaches kiln's stdout"

# --- virtio-net with kiln's NAT, on the VMM's own transport ---
run_kiln "$T/out" "$T/err" -- boot --kernel "$GUESTS/virtio_net.bzimage" \
	--net user --debug-exit --timeout 60
guest_lines "$T/out"
why=""
[ "$rc" -eq 0 ] || why="exit $rc"
why_missing "VNET mac=525400123456 mtu=1500" "VNET arp-reply" "VNET rst" "VNET ok" "RESULT PASS"
grep -q "TCP 192.168.1.1:80 denied" "$T/err" || why="$why; the denial was not logged"
report "virtio-net: the NAT answers the guest's ARP, the public posture answers a SYN to 192.168.1.1 with a RST (interrupts, logged)"
exit 0
