#!/usr/bin/env bash
# Runs every test tier and prints one summary line:
#   check: N passed, N failed, N skipped
# Tiers: unit (cmocka, plain and ASan/UBSan), cli, kvm (tiny guests),
# qemu-boot (the default guest under QEMU TCG), linux-early (real kernel's
# early boot on kiln), linux (full guest on kiln; SKIP
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

echo "== fuzz: bounded libFuzzer runs over the committed corpus"
for f in "$BUILD"/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	name=$(basename "$f")
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
for tier in tests/cli/run.sh tests/kvm/run.sh tests/kvm/virtio.sh tests/agent/run.sh tests/linux/qemu-boot.sh tests/linux/vhost-user-blk.sh tests/linux/vhost-user-fs.sh tests/linux/vhost-user-vsock.sh \
	tests/linux/early-boot.sh tests/linux/boot.sh tests/linux/sandbox.sh; do
	echo "== $tier"
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

np=$(grep -c '^pass' "$KILN_RESULTS")
nf=$(grep -c '^fail' "$KILN_RESULTS")
ns=$(grep -c '^skip' "$KILN_RESULTS")
echo
echo "check: $np passed, $nf failed, $ns skipped"
[ "$nf" -eq 0 ] && [ "$np" -gt 0 ]
