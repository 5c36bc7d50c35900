#!/usr/bin/env bash
# FUSE server benchmark (not a timed test): kiln's in-process FUSE server vs
# the same operations directly on the host, in the same run, on a tmpfs
# directory (/dev/shm) and on a disk-backed one ($BUILD/bench, or FUSE_DIR):
# 1 MiB sequential read/write throughput and create+stat+unlink rate.
#   FUSE_MIB (256)     file size       FUSE_FILES (20000)  metadata files
#   ROUNDS (7)         best of         FUSE_DIR ($BUILD/bench)  disk directory
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MIB=${FUSE_MIB:-256}
FILES=${FUSE_FILES:-20000}
ROUNDS=${ROUNDS:-7}
BIN=$BUILD/bench/fuse

[ -f "$BUILD/libkiln-internal.a" ] || make -j1 "$BUILD/libkiln-internal.a"
mkdir -p "$BUILD/bench"
cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Iinclude -Isrc \
	-o "$BIN" bench/fuse.c "$BUILD/libkiln-internal.a" -pthread -lslirp -lz -lcurl -luring

DISK=$(mktemp -d "${FUSE_DIR:-$BUILD/bench}/kiln-fuse.XXXXXX")
DIRS=("$DISK")
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	SHM=$(mktemp -d /dev/shm/kiln-fuse.XXXXXX)
	DIRS=("$SHM" "$DISK")
fi
trap 'rm -rf "${DIRS[@]}"' EXIT

"$BIN" --mib "$MIB" --files "$FILES" --rounds "$ROUNDS" "${DIRS[@]}"
