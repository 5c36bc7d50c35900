# QEMU TCG harness for kiln's Linux-driver tier scripts (sourced, not run):
# tests/linux/qemu-boot.sh and the vhost-user-{blk,fs,vsock}.sh scripts.
#
#   qemu_tier NAME            result lines "ok - NAME: ..." etc., counters,
#                             a private temp dir $T and the EXIT trap
#   qemu_prereqs [DEVICE...]  SKIP (and finish) when QEMU or one of its
#                             -device types is missing
#   qemu_guest                SKIP (and finish) when the default guest is not
#                             built; else refreshes it from the cache
#   qemu_microvm APPEND ARGS  the one microvm command line, in qemu_cmd
#   qemu_start LIMIT IN OUT   runs qemu_cmd in the background (qemu_pid)
#   console_boot ...          QEMU with its serial console on a fifo, then
#   shell_ready, gsh, wait_for, end_boot, console_tail drive the guest shell
#   vu_server_start SOCK LOG SPEC / vu_server_stop   kiln vhost-user servers
#   start_server SPEC / stop_server   the same for one server on $sock
#
# Cleanup runs on EXIT whatever happened: QEMU (not just its `timeout`
# wrapper), every server started here, then the temp dir with its sockets
# (kept only with KEEP_TMP=1). A script may define qemu_tier_cleanup to do
# more first.
# shellcheck shell=bash disable=SC2034 # variables are the callers'
# shellcheck source=tests/lib/harness.sh
. "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

QEMU=${KILN_QEMU:-qemu-system-x86_64}
QEMU_MEM_MIB=${QEMU_MEM_MIB:-256}
QEMU_KERNEL=$BUILD/guest/vmlinux
QEMU_INITRD=$BUILD/guest/initramfs.cpio.gz
# What the default guest's /init prints once it is up.
QEMU_MARKER="kiln-guest: init ready"

qemu_name=
passed=0
failed=0
T=
qemu_pid=
con=
con_fd=
qemu_server_pids=()

ok() {
	echo "ok - ${qemu_name:+$qemu_name: }$1"
	passed=$((passed + 1))
}
not_ok() {
	echo "not ok - ${qemu_name:+$qemu_name: }$1: $2"
	failed=$((failed + 1))
}
# finish: the tier's count line; exits 0 (the result lines carry the news).
finish() {
	echo "${qemu_name:-qemu}: $passed passed, $failed failed"
	exit 0
}
# tier_skip WHY: one SKIP line for the whole tier, then finish.
tier_skip() {
	skip "${qemu_name:-qemu}" "$1"
	finish
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%02d' $(($1 / 1000)) $(($1 % 1000 / 10)); }
oneline() { tr '\n' ' ' <<<"$1" | cut -c1-300; }

# qemu_tier NAME: names the result lines, makes $T, installs the EXIT trap.
qemu_tier() {
	qemu_name=$1
	T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-$1.XXXXXX") || exit 1
	trap qemu_cleanup EXIT
	# a signal ends the script through exit, so the EXIT trap runs
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# qemu_prereqs [DEVICE...]: QEMU is installed and knows each -device type.
qemu_prereqs() {
	local dev devs
	command -v "$QEMU" >/dev/null ||
		tier_skip "$QEMU not found (run scripts/install-deps.sh)"
	[ $# -eq 0 ] && return 0
	devs=$("$QEMU" -device help 2>/dev/null)
	for dev in "$@"; do
		grep -q "\"$dev\"" <<<"$devs" || tier_skip "this QEMU has no $dev"
	done
}

# qemu_guest: the default guest (`make guest`: kernel, initramfs with the
# agent) must be built; it is brought up to date through the cache
# (scripts/build-guest.sh, a copy when nothing changed).
qemu_guest() {
	local line agent=$BUILD/guest-agent/kiln-agent
	if [ ! -f "$QEMU_KERNEL" ] || [ ! -f "$QEMU_INITRD" ]; then
		tier_skip "the default guest is not built ($QEMU_KERNEL: make BUILD=$BUILD guest)"
	fi
	[ -x "$agent" ] || tier_skip "the guest agent is not built ($agent: make BUILD=$BUILD guest)"
	if ! line=$(KILN_AGENT_BIN=$agent scripts/build-guest.sh "$BUILD/guest"); then
		not_ok "prerequisites" "scripts/build-guest.sh $BUILD/guest failed"
		finish
	fi
	echo "# $line"
}

# qemu_microvm APPEND [ARGS...]: sets the array qemu_cmd to the microvm
# command line of the testing notes (shared memfd RAM for vhost-user
# back-ends, modern virtio-mmio, no ACPI, i8042 so reboot=k ends QEMU),
# then ARGS (devices, -serial), the default guest and kiln's base kernel
# command line followed by APPEND.
qemu_microvm() {
	local append=$1
	shift
	# shellcheck disable=SC2054 # the commas are QEMU's
	qemu_cmd=("$QEMU"
		-M microvm,acpi=off,memory-backend=mem,x-option-roms=off,rtc=on,isa-serial=on
		-global virtio-mmio.force-legacy=false -accel tcg -cpu max -m "$QEMU_MEM_MIB"
		-object "memory-backend-memfd,id=mem,size=${QEMU_MEM_MIB}M,share=on"
		-nodefaults -no-user-config -nographic -no-reboot
		-device i8042
		"$@"
		-kernel "$QEMU_KERNEL" -initrd "$QEMU_INITRD"
		-append "$KILN_BASE_CMDLINE${append:+ $append}")
}

# qemu_start LIMIT IN OUT: qemu_cmd in the background under `timeout`,
# stdin from IN, stdout and stderr to OUT; qemu_pid is the wrapper's.
qemu_start() {
	timeout -k 5 "$1" "${qemu_cmd[@]}" <"$2" >"$3" 2>&1 &
	qemu_pid=$!
}

# qemu_running: QEMU has not exited yet.
qemu_running() {
	[ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null
}

# qemu_kill: SIGKILL to QEMU itself, not just to the `timeout` wrapping it
# (which would leave QEMU running, still connected to the servers).
qemu_kill() {
	[ -n "$qemu_pid" ] || return 0
	pkill -KILL -P "$qemu_pid" 2>/dev/null || :
	kill -KILL "$qemu_pid" 2>/dev/null || :
	wait "$qemu_pid" 2>/dev/null || :
	qemu_pid=
}

# qemu_wait_exit SECONDS: waits for QEMU to end by itself; sets qemu_rc
# (137 when it had to be killed).
qemu_wait_exit() {
	local _
	for _ in $(seq 1 $(($1 * 10))); do
		qemu_running || break
		sleep 0.1
	done
	if qemu_running; then
		qemu_kill
		qemu_rc=137
	else
		wait "$qemu_pid" 2>/dev/null
		qemu_rc=$?
		qemu_pid=
	fi
}

# --- kiln vhost-user servers ---

# vu_server_start SOCK LOG SPEC: `kiln vhost-user` in the background (pid
# in server_pid, killed on exit); waits for its socket.
vu_server_start() {
	local sock=$1 log=$2 _
	rm -f "$sock"
	"$KILN" vhost-user ${KILN_VERBOSE:+-v} --socket "$sock" --device "$3" 2>>"$log" &
	server_pid=$!
	qemu_server_pids+=("$server_pid")
	for _ in $(seq 1 100); do
		[ -S "$sock" ] && return 0
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	return 1
}

# vu_server_stop PID: SIGTERM, at most 5 s (then SIGKILL); sets stop_rc
# (empty when it had to be killed) and fails in that case.
vu_server_stop() {
	local pid=$1 _
	stop_rc=
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 1 50); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			stop_rc=$?
			return 0
		fi
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 1
}

# The one-server scripts: kiln_pid serves $sock and logs to $T/kiln.log.
# start_server SPEC: starts it and waits for the socket.
start_server() {
	vu_server_start "$sock" "$T/kiln.log" "$1"
	local st=$?
	kiln_pid=$server_pid
	return $st
}

# stop_server: SIGTERM, at most 5 s; sets stop_rc.
stop_server() {
	vu_server_stop "$kiln_pid"
	local st=$?
	kiln_pid=
	return $st
}

# --- the guest shell on the serial console ---
# The console is a fifo into QEMU's stdin and its stdout into a log; each
# command ends with an echo of a marker that only exists once the shell
# has expanded it. Every wait is bounded.

# console_boot LOG LIMIT APPEND [ARGS...]: boots with the console log at
# LOG, QEMU killed after LIMIT seconds; ARGS are the devices.
console_boot() {
	local fifo=$T/console.in limit=$2 append=$3
	con=$1
	shift 3
	rm -f "$fifo"
	mkfifo "$fifo"
	: >"$con"
	# Read-write open: never blocks and QEMU never sees EOF.
	exec {con_fd}<>"$fifo"
	boot_start=$(now_ms)
	qemu_microvm "$append" -serial stdio "$@"
	qemu_start "$limit" "$fifo" "$con"
}

# wait_for REGEX SECONDS: polls the console log (carriage returns removed).
wait_for() {
	local end=$(($(now_ms) + $2 * 1000))
	while [ "$(now_ms)" -lt "$end" ]; do
		tr -d '\r' <"$con" | grep -qE -- "$1" && return 0
		qemu_running || {
			tr -d '\r' <"$con" | grep -qE -- "$1"
			return
		}
		sleep 0.1
	done
	return 1
}

# shell_ready: waits for init's marker, then for the shell to answer.
shell_ready() {
	wait_for "$QEMU_MARKER" 60 || return 1
	local _
	for _ in $(seq 1 20); do
		echo 'echo @@@"ready"' >&"$con_fd"
		wait_for '^@@@ready' 1 && break
	done
	tr -d '\r' <"$con" | grep -q '^@@@ready' || return 1
	echo 'stty -echo' >&"$con_fd"
	return 0
}

# gsh SECONDS CMD: runs CMD in the guest shell; sets out (its output),
# grc (its status, or "timeout") and gsh_ms (how long it took).
cmd_no=0
gsh() {
	local limit=$1 start t0
	shift
	cmd_no=$((cmd_no + 1))
	start=$(wc -c <"$con")
	t0=$(now_ms)
	printf '%s; echo @@@"done%d" rc=$?\n' "$*" "$cmd_no" >&"$con_fd"
	if ! wait_for "@@@done$cmd_no rc=[0-9]+" "$limit"; then
		out=$(tail -c +$((start + 1)) "$con" | tr -d '\r')
		grc=timeout
		gsh_ms=$(($(now_ms) - t0))
		return 124
	fi
	gsh_ms=$(($(now_ms) - t0))
	out=$(tail -c +$((start + 1)) "$con" | tr -d '\r')
	grc=$(sed -n "s/.*@@@done$cmd_no rc=\([0-9]*\).*/\1/p" <<<"$out" | tail -1)
	out=$(sed "/@@@done$cmd_no rc=/d" <<<"$out")
	return "$grc"
}

# console_close: closes the console fifo (after QEMU is gone).
console_close() {
	[ -n "$con_fd" ] && exec {con_fd}>&-
	con_fd=
}

# end_boot: reboot -f and wait (30 s at most) for QEMU to exit; sets
# boot_ms and qemu_rc.
end_boot() {
	echo 'reboot -f' >&"$con_fd"
	qemu_wait_exit 30
	boot_ms=$(($(now_ms) - boot_start))
	console_close
}

console_tail() {
	echo "# last console lines:"
	tr -d '\r' <"$con" | tail -n 15 | sed 's/^/#   /'
}

# --- cleanup ---

# shellcheck disable=SC2317 # called from the trap
qemu_cleanup() {
	local p f
	declare -F qemu_tier_cleanup >/dev/null && qemu_tier_cleanup
	qemu_kill
	for p in "${qemu_server_pids[@]}"; do kill -KILL "$p" 2>/dev/null || :; done
	wait 2>/dev/null
	console_close
	[ -n "$T" ] && [ -d "$T" ] || return 0
	if [ "${KEEP_TMP:-0}" = 1 ]; then
		echo "# logs kept in $T"
		return 0
	fi
	if [ "$failed" -gt 0 ]; then
		for f in "$T"/*.log; do
			[ -s "$f" ] || continue
			echo "# last lines of $(basename "$f") (KEEP_TMP=1 keeps $T):"
			tr -d '\r' <"$f" | tail -n 5 | sed 's/^/#   /'
		done
	fi
	rm -rf "$T"
}
