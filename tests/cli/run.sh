#!/usr/bin/env bash
# CLI tier: argument errors, file errors and KVM access errors each give a
# clear message and the documented exit code (2 usage, 125 kiln failed).
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/harness.sh
# boot checks here are the KVM engine's (its loader, its /dev/kvm errors);
# tests/cli/accel.sh checks engine selection and the emulating engine's errors
export KILN_ACCEL=kvm

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
BZ="$GUESTS/reset.bzimage"

# check NAME EXPECTED_RC STDERR_REGEX -- kiln args...
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
check "vsock cid out of range" 2 "vsock: cid=2 is not a number in 3..4294967294" -- boot --kernel "$BZ" --vsock "cid=2,uds=$T/v.sock"
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
check "vhost-user unknown key" 2 "blk: unknown key 'size' \\(keys: path, fd, ro, snapshot, format, insecure\\)" -- vhost-user --socket "$T/vu.sock" --device "blk,path=$T/none.img,size=1"
check "vhost-user trailing comma" 2 "blk: empty option" -- vhost-user --socket "$T/vu.sock" --device "blk,path=x,"
check "vhost-user escaped comma" 125 "$T/a,b.img" -- vhost-user --socket "$T/vu.sock" --device "blk,path=$T/a,,b.img"

# --device: the same syntax and checks for the VMM's devices
check "device unknown type" 2 "unknown device type 'floppy' \\(supported: blk, fs, vsock, rng, net\\)" -- boot --kernel "$BZ" --device floppy
check "device bad value" 2 "blk: ro=maybe is not on or off" -- boot --kernel "$BZ" --device "blk,path=/dev/null,ro=maybe"
check "device two vsocks" 2 "at most 1 vsock device per VM" -- boot --kernel "$BZ" --vsock "cid=3,uds=$T/v1" --device "vsock,cid=4,uds=$T/v2"
too_many=()
for i in $(seq 18); do too_many+=(--disk "$T/none$i.img"); done
check "device more than the slots" 2 "at most 17 devices .*virtio-mmio slots" -- boot --kernel "$BZ" "${too_many[@]}"
check "device missing image" 125 "cannot use disk $T/none.img" -- boot --accel kvm --kernel "$BZ" --device "blk,path=$T/none.img"

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

# sandbox commands: argument errors (the runs themselves: tests/linux/)
export XDG_RUNTIME_DIR="$T/xdg"
mkdir -m 0700 "$XDG_RUNTIME_DIR"
check "run without a command (no tty)" 2 "missing command" -- run
check "run -w relative" 2 "-w: 'tmp' is not an absolute path" -- run -w tmp -- true
check "run -e =x" 2 "-e: expected NAME=VALUE" -- run -e =x -- true
check "run --timeout 0" 2 "--timeout: '0' is not a positive" -- run --timeout 0 -- true
check "run --copy-in without guest path" 2 "--copy-in: expected HOST:/GUEST/PATH" -- run --copy-in "$T/x" -- true
check "run --copy-out relative guest path" 2 "--copy-out: expected /GUEST/PATH:HOST" -- run --copy-out "x:$T/x" -- true
check "run --share relative guest path" 2 "expected HOST_DIR:TAG" -- run --share "$T:data:rel" -- true
check "run --share bad tag" 2 "share tag" -- run --share "$T:a b" -- true
check "run --share missing dir" 125 "$T/nope" -- run --share "$T/nope:data" --kernel "$BZ" -- true
check "run --cpus 0" 2 "cpu" -- run --cpus 0 -- true
check "run unknown option" 2 "kiln run --help" -- run --bogus -- true
check "start with a bad name" 2 "is not a sandbox name" -- start --name ../x
check "start with an argument" 2 "unexpected argument" -- start extra
check "start with an argument after an option" 2 "unexpected argument" -- start --cpus 1 extra
check "run --ulimit with an unknown name" 2 "expected nofile, nproc" -- run --ulimit files=5 -- true
check "run --ulimit with soft above hard" 2 "soft limit is above" -- run --ulimit nofile=10:5 -- true
check "run --ulimit without a value" 2 "NAME=SOFT" -- run --ulimit nofile -- true
check "exec without a name" 2 "missing sandbox name" -- exec -- true
check "exec of an unknown sandbox" 125 "no sandbox named 'nope'" -- exec nope -- true
check "exec with a bad name" 2 "is not a sandbox name" -- exec ../x -- true
check "exec --vsock to nothing" 125 "agent: connecting to $T/none" -- exec --vsock "$T/none" -- true
check "cp without a sandbox side" 2 "one side must be NAME:/GUEST/PATH" -- cp "$T/a" "$T/b"
check "cp with one argument" 2 "expected SRC and DST" -- cp "$T/a"
check "cp to an unknown sandbox" 125 "no sandbox named 'nope'" -- cp "$T/a" nope:/tmp/a
check "stop without a name" 2 "missing sandbox name" -- stop
check "stop an unknown sandbox" 125 "no sandbox named 'nope'" -- stop nope
check "ps with nothing running" 0 "NAME +PID .* ENGINE +STATE" -- ps
mkdir -m 0700 "$XDG_RUNTIME_DIR/kiln" && mkdir "$XDG_RUNTIME_DIR/kiln/ghost"
echo "999999 1 256 0" >"$XDG_RUNTIME_DIR/kiln/ghost/info"
check "ps shows a dead sandbox" 0 "ghost .*dead" -- ps
run_kiln "$T/out" "$T/err" -- stop ghost
expect "stop cleans up a dead sandbox" "exit $rc or state left: $(head -c 200 "$T/err")" \
	test "$rc" = 0 -a ! -e "$XDG_RUNTIME_DIR/kiln/ghost"
# issue 18: a live pid that is not the sandbox's is never signalled
sleep 1000 &
victim=$!
mkdir "$XDG_RUNTIME_DIR/kiln/victim"
echo "$victim 1 256 0" >"$XDG_RUNTIME_DIR/kiln/victim/info"
check "stop refuses a stale pid (no start time)" 125 "names pid $victim, which is not its background process" -- \
	stop --grace 1 victim
expect "stop leaves an unrelated process alive" "pid $victim was signalled" kill -0 "$victim"
expect "stop removes the stale state" "state left" test ! -e "$XDG_RUNTIME_DIR/kiln/victim"
mkdir "$XDG_RUNTIME_DIR/kiln/victim"
echo "$victim 1 256 0 12345" >"$XDG_RUNTIME_DIR/kiln/victim/info"
check "stop refuses a stale pid (other start time)" 125 "not its background process" -- stop --grace 1 victim
expect "stop leaves it alive (other start time)" "pid $victim was signalled" kill -0 "$victim"
mkdir "$XDG_RUNTIME_DIR/kiln/victim"
echo "$victim 1 256 0 12345" >"$XDG_RUNTIME_DIR/kiln/victim/info"
check "ps marks a stale pid" 0 "victim .*stale" -- ps
rm -rf "$XDG_RUNTIME_DIR/kiln/victim"
kill "$victim" 2>/dev/null
wait "$victim" 2>/dev/null
echo x >"$XDG_RUNTIME_DIR/kiln/afile"
check "stop of a plain file in the state dir" 125 "is not a sandbox's directory" -- stop afile
expect "stop leaves the plain file" "afile removed" test -f "$XDG_RUNTIME_DIR/kiln/afile"
check "exec of a plain file in the state dir" 125 "is not a sandbox's directory" -- exec afile -- true
unset XDG_RUNTIME_DIR

# issue 18: a FIFO as a disk is refused at once, never opened blocking
mkfifo "$T/fifo"
check "disk is a FIFO" 125 "is a FIFO, not a regular file" -- boot --kernel "$BZ" --disk "$T/fifo,ro"
check "vhost-user blk on a FIFO" 125 "is a FIFO, not a regular file" -- \
	vhost-user --socket "$T/vu.sock" --device "blk,path=$T/fifo,ro"
check "kernel is a FIFO" 125 "not a regular file" -- boot --kernel "$T/fifo"
check "initrd is a FIFO" 125 "not a regular file" -- boot --kernel "$BZ" --initrd "$T/fifo"

# issue 18: exec and cp against a fake agent (tests/cli/fake_agent.c)
FA="$T/fake_agent"
AP=
stop_agent() {
	if [ -n "$AP" ]; then
		kill "$AP" 2>/dev/null
		wait "$AP" 2>/dev/null
	fi
	AP=
}
# start_agent MODE: a fake agent behind $T/agent.sock
start_agent() {
	stop_agent
	rm -f "$T/agent.sock"
	"$FA" "$T/agent.sock" "$1" &
	AP=$!
	for _ in $(seq 50); do [ -S "$T/agent.sock" ] && break; sleep 0.1; done
}
# wait_gone PID SECONDS: 0 once PID has exited (its status in $rc)
wait_gone() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		if ! kill -0 "$1" 2>/dev/null; then
			rc=0
			wait "$1" || rc=$?
			return 0
		fi
		sleep 0.1
	done
	return 1
}
if ! cc -std=c11 -D_GNU_SOURCE -O1 -Wall -Wextra -Werror -Iinclude -Isrc -o "$FA" \
	tests/cli/fake_agent.c src/agent/codec.c 2>"$T/cc.err"; then
	fail "fake agent builds" "$(head -c 300 "$T/cc.err")"
else
	trap 'stop_agent; rm -rf "$T"' EXIT
	start_agent silent
	"$KILN" exec --vsock "$T/agent.sock" -- sleep 1000 >"$T/out" 2>"$T/err" </dev/null &
	kp=$!
	sleep 1
	kill -TERM "$kp"
	sleep 1
	if ! kill -0 "$kp" 2>/dev/null; then
		fail "exec passes the first SIGTERM on" "kiln exec exited at once"
	elif ! grep -q "^SIGNAL 15" "$T/agent.sock.log"; then
		fail "exec passes the first SIGTERM on" "the agent saw: $(tr '\n' ' ' <"$T/agent.sock.log")"
	else
		pass "exec passes the first SIGTERM on"
	fi
	kill -INT "$kp"
	if ! wait_gone "$kp" 5; then
		fail "exec gives up at a second signal" "still running 5 s after SIGINT"
		kill -KILL "$kp"
	elif [ "$rc" -ne 143 ] || ! grep -q "again; killing it and giving up" "$T/err"; then
		fail "exec gives up at a second signal" "exit $rc, expected 143: $(head -c 300 "$T/err")"
	else
		pass "exec gives up at a second signal (exit 128+SIGTERM)"
	fi
	expect "exec kills the command when it gives up" "no SIGNAL 9: $(tr '\n' ' ' <"$T/agent.sock.log")" \
		grep -q "^SIGNAL 9" "$T/agent.sock.log"
	"$KILN" exec --vsock "$T/agent.sock" -- sleep 1000 >"$T/out" 2>"$T/err" </dev/null &
	kp=$!
	sleep 1
	kill -HUP "$kp"
	if ! wait_gone "$kp" 15; then
		fail "exec gives up 10 s after one signal" "still running 15 s after SIGHUP"
		kill -KILL "$kp"
	elif [ "$rc" -ne 129 ] || ! grep -q "still running 10 s after signal 1" "$T/err"; then
		fail "exec gives up 10 s after one signal" "exit $rc, expected 129: $(head -c 300 "$T/err")"
	else
		pass "exec gives up 10 s after one signal (exit 128+SIGHUP)"
	fi

	start_agent error
	run_kiln "$T/out" "$T/err" -- exec --vsock "$T/agent.sock" -- nosuch
	if [ "$rc" -ne 127 ]; then
		fail "agent error text shown without control characters" "exit $rc: $(head -c 300 "$T/err")"
	elif LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]\|\xc2[\x80-\x9f]' "$T/err"; then
		fail "agent error text shown without control characters" "$(od -c "$T/err" | head -5)"
	elif ! grep -q "nosuch: no?]0;pwned? such" "$T/err"; then
		fail "agent error text shown without control characters" "$(head -c 300 "$T/err")"
	else
		pass "agent error text shown without control characters"
	fi

	start_agent normal
	mkdir "$T/cp"
	echo keep >"$T/cp/target"
	ln -s target "$T/cp/link"
	ln -s nowhere "$T/cp/dangling"
	mkfifo "$T/cp/fifo"
	run_kiln "$T/out" "$T/err" -- cp --vsock "$T/agent.sock" :/etc/f "$T/cp/new"
	expect "cp out to a new file" "exit $rc: $(head -c 300 "$T/err")" \
		grep -qx "hello from the guest" "$T/cp/new"
	run_kiln "$T/out" "$T/err" -- cp --vsock "$T/agent.sock" :/etc/f "$T/cp/link"
	if [ "$rc" -eq 0 ] && [ -L "$T/cp/link" ] && grep -qx "hello from the guest" "$T/cp/target"; then
		pass "cp out through a symbolic link writes its target, keeps the link"
	else
		fail "cp out through a symbolic link writes its target, keeps the link" \
			"exit $rc: $(ls -l "$T/cp" | tr '\n' ' ') $(head -c 200 "$T/err")"
	fi
	check "cp out to a dangling link" 125 "dangling symbolic link" -- cp --vsock "$T/agent.sock" :/etc/f "$T/cp/dangling"
	expect "cp out leaves a dangling link alone" "replaced" \
		test -L "$T/cp/dangling" -a ! -e "$T/cp/nowhere"
	check "cp out to a FIFO nobody reads" 125 "a FIFO that nobody reads" -- \
		cp --vsock "$T/agent.sock" :/etc/f "$T/cp/fifo"
	timeout 10 cat "$T/cp/fifo" >"$T/cp/fifo.out" &
	cat_pid=$!
	sleep 0.2
	run_kiln "$T/out" "$T/err" -- cp --vsock "$T/agent.sock" :/etc/f "$T/cp/fifo"
	wait "$cat_pid"
	if [ "$rc" -eq 0 ] && [ -p "$T/cp/fifo" ] && grep -qx "hello from the guest" "$T/cp/fifo.out"; then
		pass "cp out writes into a FIFO, never replaces it"
	else
		fail "cp out writes into a FIFO, never replaces it" "exit $rc: $(ls -l "$T/cp/fifo") $(head -c 200 "$T/err")"
	fi
	run_kiln "$T/out" "$T/err" -- cp --vsock "$T/agent.sock" :/etc/f /dev/null
	expect "cp out to /dev/null writes into it" "exit $rc or /dev/null replaced: $(head -c 200 "$T/err")" \
		test "$rc" -eq 0 -a -c /dev/null
	if [ "$(id -u)" = 0 ]; then
		mknod "$T/cp/null" c 1 3
		run_kiln "$T/out" "$T/err" -- cp --vsock "$T/agent.sock" :/etc/f "$T/cp/null"
		expect "cp out to a device node keeps it" "exit $rc: $(ls -l "$T/cp/null")" \
			test "$rc" -eq 0 -a -c "$T/cp/null"
	else
		skip "cp out to a device node keeps it" "needs root for mknod"
	fi
	stop_agent
fi

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
