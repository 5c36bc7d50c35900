#!/usr/bin/env bash
# Snapshot benchmark (not a timed test): bench/snapshot.c on kiln's KVM
# engine with the prompt tiny guest. Tiny guests run on any /dev/kvm,
# PVM included. N (10) restores vs fresh boots, M (200) pool claims.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${N:-10}
M=${M:-200}
G=$BUILD/tests/guests/prompt.bzimage
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	echo "SKIP: bench: snapshots: /dev/kvm is not usable here"
	exit 0
fi
[ -f "$G" ] || { echo "bench: $G missing (make guests)"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT
BIN=$T/snapshot
cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Iinclude -Isrc \
	-o "$BIN" bench/snapshot.c "$BUILD/libkiln-internal.a" -pthread -lslirp -lz -lcurl -luring || exit 1
"$BIN" "$G" "$T" "$N" "$M" 2> >(grep -v 'PVM' >&2)
