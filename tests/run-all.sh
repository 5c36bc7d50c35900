#!/usr/bin/env bash
# Runs every test tier and prints one summary line:
#   check: N passed, N failed, N skipped
# Tiers: unit (cmocka, plain and ASan/UBSan), cli, kvm (tiny guests),
# linux-early (real kernel's early boot on kiln), linux (full guest; SKIP
# where /dev/kvm lacks hardware virtualization).
set -uo pipefail
cd "$(dirname "$0")/.."
export BUILD="${BUILD:-build}"
export KILN_RESULTS
KILN_RESULTS=$(mktemp)
trap 'rm -f "$KILN_RESULTS"' EXIT

echo "== tier 1: unit tests (cmocka)"
for t in "$BUILD"/tests/unit/test_* "$BUILD"/san/tests/unit/test_*; do
	[ -x "$t" ] || continue
	name=${t#"$BUILD"/}
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
	fi
done

for tier in tests/cli/run.sh tests/kvm/run.sh tests/linux/early-boot.sh tests/linux/boot.sh; do
	echo "== $tier"
	bash "$tier"
done

np=$(grep -c '^pass' "$KILN_RESULTS")
nf=$(grep -c '^fail' "$KILN_RESULTS")
ns=$(grep -c '^skip' "$KILN_RESULTS")
echo
echo "check: $np passed, $nf failed, $ns skipped"
[ "$nf" -eq 0 ] && [ "$np" -gt 0 ]
