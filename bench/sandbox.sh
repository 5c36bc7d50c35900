#!/usr/bin/env bash
# Sandbox benchmark (not a timed test), on whichever engine `--accel auto`
# picks here, in one run with its peer:
#  1. `kiln run -- true` end to end (boot, agent ready, exec, shutdown) vs
#     QEMU alone booting the same kernel + initramfs to /init and rebooting,
#     with the same accelerator flags (TCG: microvm, -cpu max, shared memfd;
#     KVM: microvm on /dev/kvm); medians of N interleaved runs, and the ratio.
#  2. agent exec round trip vs fork+exec by a shell in the same guest
#     (tests/support/agent_probe bench).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${N:-5}
. tests/lib/harness.sh
. tests/lib/engine.sh
G=$BUILD/guest
ENGINE=$(engine_here)
if [ -z "$ENGINE" ]; then
	echo "SKIP: bench: kiln run -- true; agent exec: $(engine_none_reason)"
	exit 0
fi
[ -f "$G/initramfs.cpio.gz" ] || { echo "bench: no default guest in $G (make guest)"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
export XDG_RUNTIME_DIR=$T/run
mkdir -m 0700 "$XDG_RUNTIME_DIR"
trap '"$BUILD/kiln" stop --grace 1 bench >/dev/null 2>&1; rm -rf "$T"' EXIT
QEMU_BIN=${KILN_QEMU:-qemu-system-x86_64}
APPEND="console=ttyS0 reboot=k panic=-1 quiet kiln.test=reboot"
if [ "$ENGINE" = tcg ]; then
	QEMU=("$QEMU_BIN" -M microvm,acpi=off,x-option-roms=off,rtc=on,isa-serial=on,memory-backend=mem
		-accel tcg -cpu max -smp 1 -m 256M -object memory-backend-memfd,id=mem,size=256M,share=on
		-global virtio-mmio.force-legacy=false -nodefaults -no-user-config -display none -no-reboot
		-serial stdio -kernel "$G/vmlinux" -initrd "$G/initramfs.cpio.gz" -append "$APPEND reboot=t")
else
	QEMU=("$QEMU_BIN" -M microvm,acpi=off,x-option-roms=off,rtc=on,isa-serial=on -accel kvm -m 256
		-nodefaults -no-user-config -display none -no-reboot -serial stdio -device i8042
		-kernel "$G/vmlinux" -initrd "$G/initramfs.cpio.gz" -append "$APPEND")
fi
ms_of() { local s=$(date +%s%N); "$@" </dev/null >/dev/null 2>&1; echo $((($(date +%s%N) - s) / 1000000)); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for _ in $(seq "$N"); do
	ms_of timeout 60 "$BUILD/kiln" run -- true >>"$T/kiln"
	ms_of timeout 60 "${QEMU[@]}" >>"$T/qemu"
done
k=$(median <"$T/kiln")
q=$(median <"$T/qemu")
target="<= 1.3"
[ "$ENGINE" = kvm ] && target="kiln <= 150 ms"
echo "bench: kiln run -- true end to end $k ms vs QEMU alone booting the same guest to /init and rebooting $q ms, ratio $(awk -v a="$k" -v b="$q" 'BEGIN {printf "%.2f", a / b}') (engine $ENGINE, median of $N; target $target)"
if timeout 120 "$BUILD/kiln" start --name bench >/dev/null 2>"$T/err"; then
	"$BUILD/tests/agent_probe" bench "$XDG_RUNTIME_DIR/kiln/bench/vsock" "${EXECS:-100}" |
		sed "s/^/bench: /; s/\$/ (engine $ENGINE)/"
	"$BUILD/kiln" stop bench >/dev/null 2>&1
else
	echo "bench: kiln start failed: $(tr '\n' ' ' <"$T/err")"
fi
