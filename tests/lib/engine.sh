# Which engine kiln's `--accel auto` picks on this host (sourced after
# harness.sh): mirrors src/vm/engine.c so the tiers can name it, and
# engine_check confirms it against kiln's own report.
#
# engine_here: prints "kvm" (hardware virtualization behind /dev/kvm),
# "tcg" (QEMU's emulator; QEMU from $KILN_QEMU or PATH), or nothing.
engine_here() {
	if [ -e /dev/kvm ] && [ -z "$(linux_on_kvm_blocker)" ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
		echo kvm
	elif [ -n "${KILN_QEMU:-}" ] && [ -x "${KILN_QEMU}" ]; then
		echo tcg
	elif [ -z "${KILN_QEMU:-}" ] && command -v qemu-system-x86_64 >/dev/null 2>&1; then
		echo tcg
	fi
}

# engine_none_reason: why no engine can run a Linux guest here.
engine_none_reason() {
	local b
	b=$(linux_on_kvm_blocker)
	echo "${b:-/dev/kvm unusable} and QEMU (qemu-system-x86_64) is not installed"
}

# kvm_unusable_reason: why --accel kvm cannot run Linux here, or nothing.
kvm_unusable_reason() {
	if [ ! -e /dev/kvm ]; then
		echo "/dev/kvm is missing"
	else
		linux_on_kvm_blocker
	fi
}
