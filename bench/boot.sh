#!/usr/bin/env bash
# Boot benchmark (not a timed test): whole-process wall time and peak RSS to
# boot a tiny guest that exits at its first instructions, for kiln, QEMU
# microvm (same image, same KVM) and the host's floor (a bare KVM program
# creating the same KVM objects), interleaved in one run; prints ratios.
# On hosts with hardware virtualization it also times launch -> /init of the
# default guest, kiln vs QEMU microvm (same kernel and initramfs).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${N:-30}
GUEST=$BUILD/tests/guests/exit0.elf
FLOOR=$BUILD/bench/kvm_floor
mkdir -p "$BUILD/bench"
cc -O2 -o "$FLOOR" bench/kvm_floor.c || exit 1
[ -f "$GUEST" ] || { echo "bench: $GUEST missing (make guests)"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# QEMU's default CPU model (-cpu host fails on PVM's MSR set); same KVM.
QEMU=(qemu-system-x86_64 -M microvm,acpi=off,x-option-roms=off,isa-serial=on
	-accel kvm -m 16 -nodefaults -no-user-config -display none -serial null -no-reboot
	-device isa-debug-exit,iobase=0x501,iosize=1 -kernel "$GUEST")
KILN=("$BUILD/kiln" boot --accel kvm --kernel "$GUEST" --memory 16 --debug-exit)

# one_run NAME CMD...: appends "wall_ms rss_kib" to $T/NAME
one_run() {
	local name=$1
	shift
	/usr/bin/time -f '%e %M' -o "$T/time" "$@" >/dev/null 2>&1 </dev/null
	local s=$(date +%s%N)
	"$@" >/dev/null 2>&1 </dev/null
	local e=$(date +%s%N)
	echo "$(((e - s) / 1000)) $(cut -d' ' -f2 "$T/time")" >>"$T/$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

for _ in $(seq "$N"); do
	one_run floor "$FLOOR"
	one_run kiln "${KILN[@]}"
	one_run qemu "${QEMU[@]}"
done
declare -A wall rss
for n in floor kiln qemu; do
	wall[$n]=$(cut -d' ' -f1 "$T/$n" | median)
	rss[$n]=$(cut -d' ' -f2 "$T/$n" | median)
done
ms() { awk -v u="$1" 'BEGIN {printf "%.2f ms", u / 1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
echo "boot-exit (tiny guest exits at its first instruction), median of $N runs each, interleaved:"
echo "  host floor (bare KVM program): wall $(ms "${wall[floor]}"), peak RSS ${rss[floor]} KiB"
echo "  kiln:                          wall $(ms "${wall[kiln]}"), peak RSS ${rss[kiln]} KiB"
echo "  qemu microvm:                  wall $(ms "${wall[qemu]}"), peak RSS ${rss[qemu]} KiB"
echo "  ratio kiln/qemu wall: $(ratio "${wall[kiln]}" "${wall[qemu]}") (target <= 0.15)"
echo "  ratio floor/qemu wall: $(ratio "${wall[floor]}" "${wall[qemu]}") (the best any VMM can do on this host)"
echo "  ratio kiln/floor wall: $(ratio "${wall[kiln]}" "${wall[floor]}")"
echo "  kiln above the host floor: $(awk -v k="${wall[kiln]}" -v f="${wall[floor]}" 'BEGIN {printf "%.2f ms", (k - f) / 1000}') wall"
echo "  ratio kiln/qemu peak RSS: $(ratio "${rss[kiln]}" "${rss[qemu]}"); kiln peak RSS $(awk -v k="${rss[kiln]}" 'BEGIN {printf "%.2f", k / 1024}') MiB (target <= 4 MiB + touched guest memory)"

if [ -d /sys/module/kvm_pvm ] && ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
	echo "SKIP: launch -> /init (default guest): /dev/kvm is PVM (no VMX/SVM)"
	exit 0
fi
G=$BUILD/guest
[ -f "$G/vmlinux" ] || scripts/build-guest.sh "$G" >/dev/null
# time_to_marker CMD...: ms from launch until the /init marker is printed
time_to_marker() {
	local s=$(date +%s%N)
	timeout 60 "$@" </dev/null 2>/dev/null | grep -m1 -q "kiln-guest: init ready"
	echo $((($(date +%s%N) - s) / 1000000))
}
for _ in $(seq 10); do
	time_to_marker "$BUILD/kiln" boot --accel kvm --kernel "$G/vmlinux" --initrd "$G/initramfs.cpio.gz" --cmdline kiln.test=reboot >>"$T/kinit"
	time_to_marker qemu-system-x86_64 -M microvm,acpi=off,x-option-roms=off,isa-serial=on,rtc=on -accel kvm \
		-m 256 -nodefaults -no-user-config -display none -serial stdio -no-reboot \
		-device i8042 -kernel "$G/vmlinux" -initrd "$G/initramfs.cpio.gz" -append "console=ttyS0 reboot=k panic=-1 kiln.test=reboot" >>"$T/qinit"
done
ki=$(median <"$T/kinit")
qi=$(median <"$T/qinit")
echo "launch -> /init marker (default guest), median of 10: kiln $ki ms, qemu microvm $qi ms, ratio $(ratio "$ki" "$qi")"
