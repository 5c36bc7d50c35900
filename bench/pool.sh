#!/usr/bin/env bash
# Pool benchmark (not a timed test), on whichever engine `--accel auto`
# picks here: `kiln run --pool P -- true` (claim a pre-booted member, exec,
# release) against a cold `kiln run -- true` (boot, exec, shutdown), N of
# each interleaved; before each pool claim the pool has refilled (that wait
# is not counted: it is what the pool does in the background). Prints the
# medians, the pool's p90, and the ratio (target <= 0.2).
#   N (10)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${N:-10}
. tests/lib/harness.sh
. tests/lib/engine.sh
ENGINE=$(engine_here)
if [ -z "$ENGINE" ]; then
	echo "SKIP: bench: kiln run --pool: $(engine_none_reason)"
	exit 0
fi
[ -f "$BUILD/guest/initramfs.cpio.gz" ] || { echo "bench: no default guest (make guest)"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
export XDG_RUNTIME_DIR=$T/run
mkdir -m 0700 "$XDG_RUNTIME_DIR"
trap '"$BUILD/kiln" pool stop bp >/dev/null 2>&1; rm -rf "$T"' EXIT
ms_of() { local s=$(date +%s%N); "$@" </dev/null >/dev/null 2>&1; echo $((($(date +%s%N) - s) / 1000000)); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; print a[i]}'; }
full() { # waits until pool bp has 2 ready
	for _ in $(seq 600); do
		"$BUILD/kiln" pool ls 2>/dev/null | awk '$1 == "bp" && $3 == 2 {f=1} END {exit !f}' && return 0
		sleep 0.1
	done
	return 1
}

"$BUILD/kiln" pool start --name bp --size 2 >/dev/null || exit 1
for _ in $(seq "$N"); do
	ms_of "$BUILD/kiln" run -- true >>"$T/cold"
	full || { echo "bench: the pool did not refill"; exit 1; }
	ms_of "$BUILD/kiln" run --pool bp -- true >>"$T/pool"
done
c=$(median <"$T/cold")
p=$(median <"$T/pool")
p90=$(pct 90 <"$T/pool")
awk -v c="$c" -v p="$p" -v p90="$p90" -v n="$N" -v e="$ENGINE" 'BEGIN {
	printf "pool [%s]: kiln run --pool P -- true %.0f ms (p90 %.0f) vs cold kiln run -- true %.0f ms, median of %d: ratio %.3f (target <= 0.2)\n",
		e, p, p90, c, n, (c > 0 ? p / c : 0) }'
