#!/usr/bin/env bash
# Python SDK tier: python/tests under Debian's python3 and pytest, against
# the library in $BUILD and real sandboxes (whichever engine runs here).
# Each pytest result becomes an "ok - python: TEST", "not ok - python:
# TEST: ..." or "SKIP: python: TEST: reason" line for tests/run-all.sh.
# Usage: tests/python/run.sh [PYTEST_ARGS...]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
: "${BUILD:=build}"
export BUILD
PY=${KILN_PYTHON:-/usr/bin/python3}

if ! "$PY" -c 'import pytest' 2>/dev/null; then
	echo "SKIP: python: $PY has no pytest (run scripts/install-deps.sh)"
	exit 0
fi
if [ ! -e "$BUILD/libkiln.so.0" ]; then
	echo "not ok - python: $BUILD/libkiln.so.0 is not built"
	exit 0
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# -p no:cacheprovider: nothing written into the tree
timeout -k 10 1500 "$PY" -m pytest -p no:cacheprovider -v -rs --tb=short python/tests "$@" >"$log" 2>&1
rc=$?
# "python/tests/test_x.py::test_y PASSED   [ 5%]"
sed -nE 's/^python\/tests\/([^ ]+)::([^ ]+) PASSED.*/ok - python: \1::\2/p' "$log"
sed -nE 's/^python\/tests\/([^ ]+)::([^ ]+) (FAILED|ERROR).*/not ok - python: \1::\2: \3 (details below)/p' "$log"
# "SKIPPED [1] python/tests/test_x.py:12: reason"
sed -nE 's/^SKIPPED \[[0-9]+\] python\/tests\/([^:]+):[0-9]+: (.*)/SKIP: python: \1: \2/p' "$log"
if grep -qE ' (FAILED|ERROR)' "$log" || { [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; }; then
	grep -E '^(E |FAILED|ERROR|_____)' "$log" | head -60 | sed 's/^/# /'
	grep -qE '(PASSED|FAILED|ERROR)' "$log" || echo "not ok - python: pytest exited $rc: $(tail -3 "$log" | tr '\n' ' ')"
fi
tail -1 "$log" | sed 's/^/# /'
