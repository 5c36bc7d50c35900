#!/usr/bin/env bash
# Linux tier: kiln boots its default guest (kernel + initramfs) to /init and
# the guest reboots cleanly. Needs hardware virtualization behind /dev/kvm;
# elsewhere prints one SKIP line with the reason.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/harness.sh

blocker=$(linux_on_kvm_blocker)
if [ -n "$blocker" ]; then
	skip "linux boot (default guest to /init, reboot)" "$blocker"
	exit 0
fi
[ -f "$BUILD/guest/vmlinux" ] || scripts/build-guest.sh "$BUILD/guest" >/dev/null
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for fmt in vmlinux bzImage; do
	start=$(date +%s%N)
	KILN_GUEST_DIR="$BUILD/guest" run_kiln "$T/out" "$T/err" -- boot --kernel "$BUILD/guest/$fmt" \
		--initrd "$BUILD/guest/initramfs.cpio.gz" --cmdline kiln.test=reboot --timeout 60
	ms=$((($(date +%s%N) - start) / 1000000))
	if [ "$rc" -eq 0 ] && grep -q "kiln-guest: init ready" "$T/out"; then
		pass "linux boot $fmt to /init and reboot (${ms} ms)"
	else
		fail "linux boot $fmt" "exit $rc: $(tail -c 400 "$T/err") $(tail -c 400 "$T/out")"
	fi
done
# the default guest: no --kernel at all
run_kiln "$T/out" "$T/err" -- boot --cmdline kiln.test=poweroff --timeout 60
if [ "$rc" -eq 0 ] && grep -q "kiln-guest: init ready" "$T/out"; then
	pass "kiln boot with the default guest, poweroff"
else
	fail "kiln boot default guest" "exit $rc: $(tail -c 400 "$T/err")"
fi
