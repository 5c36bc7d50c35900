# Shared helpers for kiln's shell test tiers (sourced, not run).
# Each result is one line: "ok - NAME", "not ok - NAME: why" or
# "SKIP: NAME: why"; tests/run-all.sh counts those lines.
: "${BUILD:=build}"
KILN="${KILN:-$BUILD/kiln}"
GUESTS="$BUILD/tests/guests"
# What kiln adds to every kernel command line: its base, then the
# virtio-mmio devices every VM has (console, rng), before the user's args.
KILN_BASE_CMDLINE="console=ttyS0 reboot=k panic=-1"
KILN_DEVICES_CMDLINE="virtio_mmio.device=512@0xd0000000:5 virtio_mmio.device=512@0xd0001000:6"

pass() { echo "ok - $1"; }
fail() { echo "not ok - $1: $2"; }
skip() { echo "SKIP: $1: $2"; }

# run_kiln OUT ERR -- ARGS: runs kiln with a hard outer limit so a broken
# test can never hang the suite; sets $rc.
run_kiln() {
	local out=$1 err=$2
	shift 3
	rc=0
	timeout -k 5 "${KILN_TEST_LIMIT:-120}" "$KILN" "$@" >"$out" 2>"$err" </dev/null || rc=$?
}

# check NAME STATUS REGEX -- ARGS: runs kiln ARGS (outputs in $T/out and
# $T/err); passes if it exits with STATUS and its output matches REGEX.
check() {
	local name=$1 want=$2 re=$3
	shift 4
	run_kiln "$T/out" "$T/err" -- "$@"
	if [ "$rc" -ne "$want" ]; then
		fail "$name" "exit $rc, expected $want; stderr: $(head -c 300 "$T/err")"
	elif ! grep -qE -- "$re" "$T/err" "$T/out"; then
		fail "$name" "output lacks /$re/: $(head -c 300 "$T/err")"
	else
		pass "$name"
	fi
}

# expect NAME COND_DESCRIPTION COMMAND...: pass if COMMAND succeeds.
expect() {
	local name=$1 what=$2
	shift 2
	if "$@"; then pass "$name"; else fail "$name" "$what"; fi
}

# Why full Linux guests cannot run on this host's /dev/kvm, or nothing.
linux_on_kvm_blocker() {
	if [ ! -e /dev/kvm ]; then
		echo "/dev/kvm is missing"
	elif [ -d /sys/module/kvm_pvm ] && ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
		echo "/dev/kvm is PVM (no VMX/SVM)"
	fi
}
