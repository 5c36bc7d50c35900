#!/usr/bin/env bash
# CLI tier, engine selection: --accel and $KILN_ACCEL are parsed like every
# other option, a missing engine is a clear 125 naming what to install,
# --accel kvm never falls back, and the emulating engine (tcg) refuses bad
# kernels, initrds and options before QEMU starts, with the KVM engine's
# messages. A QEMU that fails maps onto outcome vmm-error with its stderr.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/harness.sh

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
BZ="$GUESTS/reset.bzimage"
export KILN_TEST_LIMIT=30
unset KILN_ACCEL
if [ ! -f "$BZ" ]; then
	fail "test guests" "$BZ not built (make guests)"
	exit 0
fi

check "--accel with an unknown engine" 2 "--accel: 'bogus' is not an engine \(auto, kvm or tcg\)" -- \
	boot --accel bogus --kernel "$BZ"
KILN_ACCEL=bogus check "KILN_ACCEL with an unknown engine" 2 "KILN_ACCEL: 'bogus' is not an engine" -- \
	boot --kernel "$BZ"
KILN_ACCEL=bogus check "--accel wins over KILN_ACCEL" 2 "--accel: 'nope' is not an engine" -- \
	boot --accel nope --kernel "$BZ"
check "run --accel with an unknown engine" 2 "--accel: 'bogus' is not an engine" -- \
	run --accel bogus -- true
KILN_QEMU=$T/no-qemu check "--accel tcg without QEMU" 125 "needs QEMU: install qemu-system-x86" -- \
	boot --accel tcg --kernel "$BZ"
KILN_KVM_DEVICE=$T/no-kvm KILN_QEMU=$T/no-qemu check "auto with neither engine" 125 \
	"does not exist: KVM is not loaded" -- boot --kernel "$BZ"
expect "auto with neither engine names the package" "$(head -c 300 "$T/err")" \
	grep -q "install qemu-system-x86" "$T/err"
KILN_KVM_DEVICE=$T/no-kvm check "--accel kvm never falls back to QEMU" 125 \
	"does not exist: KVM is not loaded" -- boot --accel kvm --kernel "$BZ"
expect "--accel kvm started no QEMU" "$(head -c 300 "$T/err")" \
	bash -c "! grep -q 'engine: tcg' '$T/err'"

# QEMU's own failure: outcome vmm-error, its stderr in the message
printf '#!/bin/sh\necho "qemu-system-x86_64: something broke" >&2\nexit 1\n' >"$T/fake-qemu"
chmod +x "$T/fake-qemu"
KILN_QEMU=$T/fake-qemu check "a failing QEMU is reported with its stderr" 125 \
	"vmm-error: QEMU failed \(exit status 1\): qemu-system-x86_64: something broke" -- \
	boot --accel tcg --kernel "$BZ"

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
	skip "emulating engine refuses bad guests before QEMU starts" "QEMU (qemu-system-x86_64) is not installed"
	exit 0
fi
# init_size (offset 0x260) of 64 MiB cannot fit in 16 MiB of RAM
cp "$BZ" "$T/big.bz"
printf '\x00\x00\x00\x04' | dd of="$T/big.bz" bs=1 seek=$((0x260)) conv=notrunc status=none
check "tcg: kernel too large for memory" 125 "kernel is too large for the memory size.*raise --memory" -- \
	boot --accel tcg --kernel "$T/big.bz" --memory 16
head -c $((20 << 20)) /dev/zero >"$T/initrd.big"
check "tcg: initrd too big" 125 "initrd is too big.*raise --memory" -- \
	boot --accel tcg --kernel "$BZ" --initrd "$T/initrd.big" --memory 16
head -c 4096 /dev/urandom >"$T/junk"
check "tcg: kernel not bzImage or ELF" 125 "not a usable kernel image" -- \
	boot --accel tcg --kernel "$T/junk"
check "tcg: virtio console refused" 125 "virtio console is not available on the emulating engine" -- \
	boot --accel tcg --kernel "$BZ" --console virtio
mkfifo "$T/fifo"
check "tcg: kernel is a FIFO" 125 "not a regular file" -- boot --accel tcg --kernel "$T/fifo"
left=$(pgrep -a -f "[q]emu-system-x86_64.*$T" | head -3)
expect "tcg: no QEMU left behind" "$left" test -z "$left"
