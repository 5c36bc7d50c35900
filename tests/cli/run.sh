#!/usr/bin/env bash
# CLI tier: argument errors, file errors and KVM access errors each give a
# clear message and the documented exit code (2 usage, 125 kiln failed).
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/harness.sh

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
BZ="$GUESTS/reset.bzimage"

# check NAME EXPECTED_RC STDERR_REGEX -- kiln args...
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

check "no command" 2 "missing command" --
check "help" 0 "Usage: kiln run" -- --help
check "boot --help" 0 "--console-log" -- boot --help
check "version" 0 "^kiln [0-9]+\.[0-9]+\.[0-9]+" -- --version
check "unknown command" 2 "unknown command 'frobnicate'" -- frobnicate
check "unknown option" 2 "unrecognized option" -- boot --frobnicate
check "stray argument" 2 "unexpected argument 'extra'" -- boot --kernel "$BZ" extra
check "cpus zero" 2 "cpu count 0 is out of range \(1\.\.64\)" -- boot --kernel "$BZ" --cpus 0
check "cpus too many" 2 "cpu count 65 is out of range" -- boot --kernel "$BZ" --cpus 65
check "cpus not a number" 2 "--cpus: 'two' is not a number" -- boot --kernel "$BZ" --cpus two
check "memory too small" 2 "memory size 1 MiB is out of range" -- boot --kernel "$BZ" --memory 1
check "memory too large" 2 "memory size 99999999 MiB is out of range" -- boot --kernel "$BZ" --memory 99999999
check "memory negative" 2 "--memory: '-5' is not a number" -- boot --kernel "$BZ" --memory -5
check "timeout invalid" 2 "--timeout: '0' is not a positive" -- boot --kernel "$BZ" --timeout 0
check "missing option argument" 2 "requires an argument" -- boot --kernel
check "console kind invalid" 2 "--console: 'vga' is not 'serial' or 'virtio'" -- boot --kernel "$BZ" --console vga
check "vsock spec invalid" 2 "--vsock: expected cid=CID,uds=PATH" -- boot --kernel "$BZ" --vsock cid=3
check "vsock cid out of range" 2 "vsock guest CID 2 is out of range" -- boot --kernel "$BZ" --vsock "cid=2,uds=$T/v.sock"
check "share spec invalid" 2 "--share: expected HOST_DIR:TAG\[:ro\]" -- boot --kernel "$BZ" --share "$T"
check "share mode invalid" 2 "--share: expected" -- boot --kernel "$BZ" --share "$T:data:rx"
check "share tag twice" 2 "share tag 'data' is used twice" -- boot --kernel "$BZ" --share "$T:data" --share "$T:data:ro"
check "share dir missing" 125 "$T/noshare" -- boot --kernel "$BZ" --share "$T/noshare:data"
check "disk path empty" 2 "--disk: missing path" -- boot --kernel "$BZ" --disk ,ro

# vhost-user: argument and device errors
check "vhost-user help" 0 "--socket PATH" -- vhost-user --help
check "vhost-user no socket" 2 "socket" -- vhost-user --device blk,path=/dev/null
check "vhost-user unknown device" 2 "unknown device type" -- vhost-user --socket "$T/vu.sock" --device floppy,path=x
check "vhost-user blk without path" 2 "path" -- vhost-user --socket "$T/vu.sock" --device blk
check "vhost-user missing image" 125 "$T/none.img" -- vhost-user --socket "$T/vu.sock" --device "blk,path=$T/none.img"

# mkimage: an ext4 image from a directory, never over an existing file
mkdir -p "$T/tree/sub"
echo "hello from the host" >"$T/tree/sub/hello.txt"
run_kiln "$T/out" "$T/err" -- mkimage "$T/tree" "$T/tree.img" --size 16
expect "mkimage" "exit $rc: $(cat "$T/err")" [ "$rc" -eq 0 ]
if command -v debugfs >/dev/null && [ "$(debugfs -R 'cat /sub/hello.txt' "$T/tree.img" 2>/dev/null)" = "hello from the host" ]; then
	pass "mkimage content"
else
	fail "mkimage content" "file not found in the image"
fi
check "mkimage existing image" 125 "cannot create .*File exists" -- mkimage "$T/tree" "$T/tree.img"
check "mkimage missing dir" 125 "is not a directory" -- mkimage "$T/nodir" "$T/x.img"
check "mkimage bad size" 2 "--size: '0' is not a size" -- mkimage "$T/tree" "$T/y.img" --size 0
check "mkimage arguments" 2 "expected DIR and IMAGE" -- mkimage "$T/tree"

check "kernel missing" 125 "kernel file $T/nope does not exist" -- boot --kernel "$T/nope"
: >"$T/empty"
check "kernel empty" 125 "kernel file $T/empty is empty" -- boot --kernel "$T/empty"
check "kernel is a directory" 125 "is not a regular file" -- boot --kernel "$T"
head -c 4096 /dev/urandom >"$T/random"
check "kernel not bzImage or ELF" 125 "neither a bzImage .* nor an ELF" -- boot --kernel "$T/random"
if [ -f "$BZ" ]; then
	head -c 1100 "$BZ" >"$T/trunc.bz"
	check "kernel truncated" 125 "bzImage truncated" -- boot --kernel "$T/trunc.bz"
	# init_size (offset 0x260) of 64 MiB cannot fit in 16 MiB of RAM
	cp "$BZ" "$T/big.bz"
	printf '\x00\x00\x00\x04' | dd of="$T/big.bz" bs=1 seek=$((0x260)) conv=notrunc status=none
	check "kernel too large for memory" 125 "kernel is too large for the memory size.*raise --memory" -- \
		boot --kernel "$T/big.bz" --memory 16
	head -c $((20 << 20)) /dev/zero >"$T/initrd.big"
	check "initrd too big" 125 "initrd is too big.*raise --memory" -- \
		boot --kernel "$BZ" --initrd "$T/initrd.big" --memory 16
	check "initrd missing" 125 "initrd file $T/none does not exist" -- \
		boot --kernel "$BZ" --initrd "$T/none"
	check "disk missing" 125 "$T/nodisk.img: no such file" -- boot --kernel "$BZ" --disk "$T/nodisk.img"
	head -c 1001 /dev/zero >"$T/odd.img"
	check "disk size not sectors" 125 "is not a multiple of 512" -- boot --kernel "$BZ" --disk "$T/odd.img"
	check "disk is a directory" 125 "cannot use disk $T" -- boot --kernel "$BZ" --disk "$T"
	check "console log unwritable" 125 "cannot open console log" -- \
		boot --kernel "$BZ" --console-log "$T/no/such/dir/log"
	check "cmdline too long" 125 "kernel command line is [0-9]+ bytes; this kernel accepts at most" -- \
		boot --kernel "$BZ" --cmdline "$(head -c 5000 /dev/zero | tr '\0' x)"

	KILN_KVM_DEVICE=$T/kvm-missing check "kvm device missing" 125 \
		"does not exist: KVM is not loaded.*modprobe kvm_intel or modprobe kvm_amd" -- boot --kernel "$BZ"
	if [ -e /dev/kvm ]; then
		if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
			rc=0
			timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups \
				"$KILN" boot --kernel "$BZ" >"$T/out" 2>"$T/err" </dev/null || rc=$?
			if [ "$rc" -eq 125 ] && grep -q "permission denied. Add your user to the kvm group" "$T/err"; then
				pass "kvm device not accessible"
			else
				fail "kvm device not accessible" "exit $rc: $(cat "$T/err")"
			fi
		else
			skip "kvm device not accessible" "needs root to drop to an unprivileged user"
		fi
		FAKE="$BUILD/tests/fakekvm.so"
		LD_PRELOAD=$FAKE KILN_FAKE_API_VERSION=11 check "kvm api version" 125 \
			"speaks KVM API version 11; kiln needs version 12" -- boot --kernel "$BZ"
		LD_PRELOAD=$FAKE KILN_FAKE_MISSING_CAP=32 check "kvm missing extension" 125 \
			"lacks the required extension KVM_CAP_IRQFD" -- boot --kernel "$BZ"
		# On a PVM host kiln must say so at start, naming what is needed.
		run_kiln "$T/out" "$T/err" -- boot --kernel "$BZ"
		if [ -n "$(linux_on_kvm_blocker)" ]; then
			expect "pvm host warning" "no PVM warning: $(cat "$T/err")" \
				grep -q "PVM.*PVM-enabled guest kernel" "$T/err"
		else
			expect "no pvm warning on hardware virt" "unexpected warning" \
				bash -c "! grep -q PVM '$T/err'"
		fi
	else
		skip "kvm access errors" "/dev/kvm missing"
	fi
else
	fail "test guests" "$BZ not built (make guests)"
fi
