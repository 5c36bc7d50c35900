#!/usr/bin/env bash
# Pools tier: `kiln pool start/ls/stop` and `kiln run --pool` on whichever
# engine `--accel auto` picks (QEMU TCG here). 20 claims with the right
# output and status, each in a member never used before (distinct boot ids),
# the pool refilling; stdin through a member; a claimant killed mid-command
# releases its member; a pool whose members cannot boot answers with the
# reason (run --pool and pool ls) instead of hanging; the refusals; and
# `kiln pool stop` leaving no process, VM or state behind.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/harness.sh

T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-pool.XXXXXX")
export XDG_RUNTIME_DIR=$T/run
mkdir -m 0700 "$XDG_RUNTIME_DIR"
# shellcheck disable=SC2317 # called from the trap
cleanup() {
	for p in wp bad; do "$KILN" pool stop "$p" >/dev/null 2>&1; done
	rm -rf "$T"
}
trap cleanup EXIT
oneline() { tr '\n' ' ' <"$1" | cut -c1-400; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
P=$XDG_RUNTIME_DIR/kiln/.pools

if [ ! -f "$BUILD/guest/initramfs.cpio.gz" ]; then
	fail "pool prerequisites" "no default guest in $BUILD/guest (make guest)"
	exit 0
fi
. tests/lib/engine.sh
ENGINE=$(engine_here)
if [ -z "$ENGINE" ]; then
	skip "kiln pool (20 claims, refill, failures, stop)" "$(engine_none_reason)"
	exit 0
fi
E=" [$ENGINE]"

# --- refusals: nothing starts ---
check "pool start without --name: usage error" 2 "name POOL is required" -- pool start --size 2
check "pool start --size 0: usage error" 2 "size: expected 1..64" -- pool start --name x --size 0
check "pool start with -p: refused (one member could bind it)" 2 "published port" -- \
	pool start --name x --net user -p 18080:80
truncate -s 1M "$T/rw.img"
check "pool start with a read-write disk: refused" 2 "read-write" -- pool start --name x --disk "$T/rw.img"
if [ ! -e "$P/x" ]; then pass "refused pools leave no state"; else fail "refused pools leave no state" "$(ls -R "$P")"; fi
check "run --pool with a VM option: usage error" 2 "belongs to kiln pool start" -- run --pool wp --cpus 2 -- true
check "run --pool with no such pool: 125" 125 "does not answer" -- run --pool nosuch -- true

# --- a working pool ---
run_kiln "$T/out" "$T/err" -- pool start --name wp --size 2
if [ "$rc" = 0 ] && grep -qx wp "$T/out" && [ -S "$P/wp/control" ]; then
	pass "kiln pool start --name wp --size 2$E"
else
	fail "kiln pool start" "exit $rc: $(oneline "$T/err")"
fi
# a twin is refused while it runs
check "a second pool of the same name: refused" 125 "exists" -- pool start --name wp

ok=1 why=
: >"$T/ids"
t0=$(now_ms)
for i in $(seq 20); do
	KILN_TEST_LIMIT=120 run_kiln "$T/o$i" "$T/e$i" -- run --pool wp -- \
		sh -c "cat /proc/sys/kernel/random/boot_id; echo run-$i; exit $((i % 7))"
	if [ "$rc" != $((i % 7)) ] || ! grep -qx "run-$i" "$T/o$i"; then
		ok= why="claim $i: exit $rc (want $((i % 7))): $(oneline "$T/o$i") $(oneline "$T/e$i")"
		break
	fi
	head -1 "$T/o$i" >>"$T/ids"
done
t=$(($(now_ms) - t0))
distinct=$(sort -u "$T/ids" | wc -l)
if [ -n "$ok" ] && [ "$distinct" = 20 ]; then
	pass "20 x kiln run --pool: right output and status, 20 distinct members (never reused), $t ms$E"
else
	fail "20 x kiln run --pool" "${why:-$distinct distinct boot ids of 20}"
fi

# the pool refills to its size
refilled=
for _ in $(seq 120); do
	"$KILN" pool ls >"$T/ls" 2>&1
	if awk '$1 == "wp" && $3 == 2 && $6 >= 20 {f=1} END {exit !f}' "$T/ls"; then refilled=1; break; fi
	sleep 0.5
done
if [ -n "$refilled" ]; then
	pass "the pool refills to 2 ready; pool ls counts 20+ claims, no failures"
else
	fail "pool refill" "$(oneline "$T/ls")"
fi

# stdin and a claim's files go through the member like kiln run's
printf 'through the pool\n' >"$T/in"
out=$(timeout 120 "$KILN" run --pool wp -i -- cat <"$T/in" 2>&1)
if [ "$out" = "through the pool" ]; then
	pass "kiln run --pool -i: stdin reaches the command"
else
	fail "kiln run --pool -i" "$out"
fi

# a claimant killed mid-command: its member is released (destroyed)
"$KILN" run --pool wp -- sleep 600 >/dev/null 2>&1 &
cp=$!
for _ in $(seq 100); do
	"$KILN" pool ls >"$T/ls" 2>&1
	awk '$1 == "wp" && $5 == 1 {f=1} END {exit !f}' "$T/ls" && break
	sleep 0.2
done
kill -9 "$cp" 2>/dev/null
wait "$cp" 2>/dev/null
released=
for _ in $(seq 50); do
	"$KILN" pool ls >"$T/ls" 2>&1
	if awk '$1 == "wp" && $5 == 0 {f=1} END {exit !f}' "$T/ls"; then released=1; break; fi
	sleep 0.2
done
if [ -n "$released" ]; then
	pass "a claimant killed mid-command releases its member (in use back to 0)"
else
	fail "claimant killed" "$(oneline "$T/ls")"
fi

# --- a pool whose members cannot boot ---
head -c 200000 /dev/urandom >"$T/garbage"
run_kiln "$T/out" "$T/err" -- pool start --name bad --size 1 --kernel "$T/garbage"
t0=$(now_ms)
KILN_TEST_LIMIT=60 run_kiln "$T/out" "$T/err" -- run --pool bad -- true
t=$(($(now_ms) - t0))
if [ "$rc" = 125 ] && grep -q "not a usable kernel" "$T/err"; then
	pass "run --pool on a pool whose members cannot boot: 125 after $t ms with the reason, no hang"
else
	fail "run --pool on a failing pool" "exit $rc after $t ms: $(oneline "$T/err")"
fi
"$KILN" pool ls >"$T/ls" 2>&1
if awk '$1 == "bad" && $7 >= 1 {f=1} END {exit !f}' "$T/ls" && grep -q "not a usable kernel" "$T/ls"; then
	pass "pool ls shows the failing pool's failures and last error"
else
	fail "pool ls of a failing pool" "$(oneline "$T/ls")"
fi

# --- stop: nothing left ---
pid=$(awk '{print $1}' "$P/wp/info" 2>/dev/null)
kids=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ')
run_kiln "$T/out2" "$T/err2" -- pool stop bad
run_kiln "$T/out" "$T/err" -- pool stop wp
sleep 0.5
# (a zombie is gone: this container's PID 1 may not reap orphans)
running() { case $(ps -o stat= -p "$1" 2>/dev/null) in "" | Z*) return 1 ;; esac; }
left=
for k in $kids; do running "$k" && left="$left $k"; done
if [ "$rc" = 0 ] && [ ! -e "$P/wp" ] && [ ! -e "$P/bad" ] && ! running "$pid" && [ -z "$left" ]; then
	pass "kiln pool stop: no process, VM (its children: ${kids:-none}) or state left"
else
	fail "kiln pool stop" "exit $rc: $(oneline "$T/err") $(ls "$P" 2>&1) children left:$left"
fi
check "run --pool after stop: 125" 125 "does not answer" -- run --pool wp -- true
