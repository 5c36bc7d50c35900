#!/usr/bin/env bash
# The installed library's interface: libkiln.a and libkiln.so.N define only
# kiln_-prefixed global symbols, the soname follows KILN_VERSION_MAJOR, and
# a program using the public header links against the archive alone.
# Prints "ok - " / "not ok - " lines (tests/run-all.sh counts them); exits
# non-zero when any check failed. Needs `make all` first.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
BUILD=${BUILD:-build}
NM=${NM:-nm}
CC=${CC:-cc}
failed=0
ok() { echo "ok - $1"; }
not_ok() {
	echo "not ok - $1: $2"
	failed=$((failed + 1))
}

major=$(sed -n 's/^#define KILN_VERSION_MAJOR[[:space:]]*\([0-9]*\).*/\1/p' include/kiln/kiln.h)
version=$(sed -n 's/^#define KILN_VERSION_STRING[[:space:]]*"\(.*\)".*/\1/p' include/kiln/kiln.h)
lib_a=$BUILD/libkiln.a
lib_so=$BUILD/libkiln.so.$major

# leaks FILE NM-ARGS...: the defined global symbols of FILE not named kiln_*.
leaks() {
	local file=$1
	shift
	"$NM" "$@" "$file" | awk 'NF >= 3 && $2 ~ /^[A-TV-Z]$/ && $3 !~ /^kiln_/ { print $3 }' | sort -u
}

if [ ! -f "$lib_a" ]; then
	not_ok "libkiln.a exports only kiln_ symbols" "$lib_a is missing (make all)"
elif ! out=$("$NM" -g --defined-only "$lib_a" 2>&1); then
	not_ok "libkiln.a exports only kiln_ symbols" "$NM failed: $out"
elif bad=$(leaks "$lib_a" -g --defined-only) && [ -n "$bad" ]; then
	not_ok "libkiln.a exports only kiln_ symbols" "$(wc -l <<<"$bad") others: $(head -n 20 <<<"$bad" | tr '\n' ' ')"
elif ! grep -q ' T kiln_version$' <<<"$out"; then
	not_ok "libkiln.a exports only kiln_ symbols" "kiln_version is not among them"
else
	ok "libkiln.a exports only kiln_ symbols ($(grep -c ' [A-TV-Z] kiln_' <<<"$out") of them)"
fi

if [ ! -f "$lib_so" ]; then
	not_ok "libkiln.so exports only kiln_ symbols" "$lib_so is missing (make all)"
elif bad=$(leaks "$lib_so" -D --defined-only) && [ -n "$bad" ]; then
	not_ok "libkiln.so exports only kiln_ symbols" "$(wc -l <<<"$bad") others: $(head -n 20 <<<"$bad" | tr '\n' ' ')"
else
	ok "libkiln.so exports only kiln_ symbols ($("$NM" -D --defined-only "$lib_so" | grep -c ' kiln_') of them)"
	soname=$(objdump -p "$lib_so" 2>/dev/null | awk '$1 == "SONAME" { print $2 }')
	if [ "$soname" = "libkiln.so.$major" ]; then
		ok "libkiln.so soname is libkiln.so.$major (KILN_VERSION_MAJOR)"
	else
		not_ok "libkiln.so soname" "'$soname', want libkiln.so.$major"
	fi
fi

# A program on the public header alone, linked with the archive alone.
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-abi.XXXXXX")
trap 'rm -rf "$T"' EXIT
cat >"$T/prog.c" <<'PROG'
#include <stdio.h>
#include <string.h>
#include <kiln/kiln.h>
int main(void)
{
	struct kiln_config *cfg = kiln_config_new();

	if (!cfg || strcmp(kiln_version(), KILN_VERSION_STRING) != 0)
		return 1;
	kiln_config_free(cfg);
	puts(kiln_version());
	return 0;
}
PROG
if [ -f "$lib_a" ] && "$CC" -std=c11 -Iinclude -o "$T/prog" "$T/prog.c" "$lib_a" -pthread -lslirp -lz -lcurl -luring 2>"$T/cc.log" &&
	[ "$("$T/prog")" = "$version" ]; then
	ok "a program on kiln.h links with libkiln.a alone (kiln_version $version)"
else
	not_ok "a program links with libkiln.a alone" "$(head -c 400 "$T/cc.log" 2>/dev/null | tr '\n' ' ')"
fi
[ "$failed" -eq 0 ]
