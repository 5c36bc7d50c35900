#!/usr/bin/env bash
# Runs every test tier and prints one summary line:
#   check: N passed, N failed, N skipped
# Tiers: unit (cmocka, plain and ASan/UBSan), fuzz, abi (the installed
# library's symbols), cli, kvm (tiny guests), agent, qemu-boot (the default
# guest under QEMU TCG), the Linux-driver tier (QEMU + kiln vhost-user;
# pjdfstest on kiln's share and on virtiofsd's),
# linux-early (real kernel's early boot on kiln), linux (full guest on kiln;
# SKIP where /dev/kvm lacks hardware virtualization), python (the Python
# SDK's pytest suite on real sandboxes).
#
# Usage: tests/run-all.sh [unit]   (unit: only the cmocka tier, for
# `make check-unit`). Nothing expected is dropped silently: a unit-test or
# fuzz binary that is missing (did not build) or not executable, and a
# tier script that is missing, each count as a failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export BUILD="${BUILD:-build}"
export KILN_RESULTS
KILN_RESULTS=$(mktemp)
trap 'rm -f "$KILN_RESULTS"' EXIT
only=${1:-all}
case "$only" in
all | unit) ;;
*)
	echo "usage: $0 [unit]" >&2
	exit 2
	;;
esac

summary() {
	local np nf ns
	np=$(grep -c '^pass' "$KILN_RESULTS")
	nf=$(grep -c '^fail' "$KILN_RESULTS")
	ns=$(grep -c '^skip' "$KILN_RESULTS")
	echo
	echo "check: $np passed, $nf failed, $ns skipped"
	[ "$nf" -eq 0 ] && [ "$np" -gt 0 ]
}

# unit_run BINARY NAME: runs one cmocka binary, counts its tests.
unit_run() {
	local t=$1 name=$2 out st npass nfail
	out=$("$t" 2>&1)
	st=$?
	npass=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' <<<"$out" | tail -1)
	nfail=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' <<<"$out" | tail -1)
	echo "$name: ${npass:-0} passed, ${nfail:-0} failed"
	for _ in $(seq 1 "${npass:-0}"); do echo "pass $name" >>"$KILN_RESULTS"; done
	for _ in $(seq 1 "${nfail:-0}"); do echo "fail $name" >>"$KILN_RESULTS"; done
	if [ "$st" -ne 0 ]; then
		echo "$out" | grep -E 'FAIL|ERROR|Sanitizer|runtime error' | head -20
		[ -n "$nfail" ] || echo "fail $name (exit $st)" >>"$KILN_RESULTS"
	elif [ -z "$npass" ]; then
		echo "$name: no cmocka summary in its output"
		echo "fail $name (no summary)" >>"$KILN_RESULTS"
	fi
}

echo "== tier 1: unit tests (cmocka)"
# One plain and one sanitizer binary per tests/unit/test_*.c.
for src in tests/unit/test_*.c; do
	[ -e "$src" ] || continue
	base=$(basename "$src" .c)
	for t in "$BUILD/tests/unit/$base" "$BUILD/san/tests/unit/$base"; do
		name=${t#"$BUILD"/}
		if [ ! -e "$t" ]; then
			echo "$name: not built"
			echo "fail $name (not built)" >>"$KILN_RESULTS"
			continue
		elif [ ! -x "$t" ]; then
			echo "$name: not executable"
			echo "fail $name (not executable)" >>"$KILN_RESULTS"
			continue
		fi
		unit_run "$t" "$name"
	done
done
[ "$only" = unit ] && { summary; exit; }

echo "== fuzz: bounded libFuzzer runs over the committed corpus"
for src in fuzz/fuzz_*.c; do
	[ -e "$src" ] || continue
	f=$BUILD/fuzz/$(basename "$src" .c)
	name=$(basename "$f")
	if [ ! -x "$f" ]; then
		echo "not ok - $name: $f is missing or not executable (did it build?)"
		echo "fail $name (not built)" >>"$KILN_RESULTS"
		continue
	fi
	corpus=fuzz/corpus/${name#fuzz_}
	work=$(mktemp -d)
	# New inputs go to the scratch dir (first), never into the repo.
	if out=$("$f" -runs="${FUZZ_RUNS:-20000}" -max_total_time=60 "$work" "$corpus" 2>&1); then
		echo "ok - $name: $(grep -oE 'Done [0-9]+ runs' <<<"$out" | tail -1)"
		echo "pass $name" >>"$KILN_RESULTS"
	else
		echo "not ok - $name"; grep -E 'ERROR|SUMMARY|runtime error' <<<"$out" | head -5
		echo "fail $name" >>"$KILN_RESULTS"
	fi
	rm -rf "$work"
done

# Shell tiers print "ok - ", "not ok - " and "SKIP: " lines; count them.
# A tier listed here must exist; the optional ones run when present.
tiers=(tests/abi/exports.sh tests/cli/run.sh)
tiers+=(tests/cli/accel.sh)
tiers+=(tests/kvm/run.sh tests/kvm/virtio.sh tests/agent/run.sh tests/linux/qemu-boot.sh
	tests/linux/vhost-user-blk.sh tests/linux/vhost-user-fs.sh tests/linux/vhost-user-vsock.sh
	tests/linux/pjdfstest.sh tests/linux/early-boot.sh tests/linux/boot.sh tests/linux/sandbox.sh
	tests/linux/net.sh tests/linux/disk.sh tests/linux/pool.sh tests/linux/snapshot.sh tests/python/run.sh)
[ -e tests/linux/tcg.sh ] && tiers+=(tests/linux/tcg.sh)
for tier in "${tiers[@]}"; do
	echo "== $tier"
	if [ ! -f "$tier" ]; then
		echo "not ok - $tier: the tier script is missing"
		echo "fail $tier (missing)" >>"$KILN_RESULTS"
		continue
	fi
	log=$(mktemp)
	bash "$tier" 2>&1 | tee "$log"
	st=${PIPESTATUS[0]}
	grep '^ok - ' "$log" | sed 's/^/pass /' >>"$KILN_RESULTS"
	grep '^not ok - ' "$log" | sed 's/^/fail /' >>"$KILN_RESULTS"
	grep '^SKIP: ' "$log" | sed 's/^/skip /' >>"$KILN_RESULTS"
	if [ "$st" -ne 0 ] && ! grep -q '^not ok - ' "$log"; then
		echo "fail $tier exited $st" >>"$KILN_RESULTS"
	fi
	rm -f "$log"
done

summary
