#!/usr/bin/env bash
# POSIX conformance tier for kiln's virtio-fs: the pjdfstest suite, run as
# root in the project's Linux guest under QEMU TCG on a share served by
# `kiln vhost-user --device fs,...`, and in the same run, with the identical
# guest, on a share served by QEMU's own virtiofsd. A failure both servers
# have comes from the guest kernel; one only kiln has is kiln's bug.
#
# The suite is third-party (pjdfstest, BSD licence) and not part of the
# project: it is used from $KILN_PJDFSTEST (default
# ../shared/conformance/pjdfstest beside the repo), where suite/ holds the
# static pjdfstest binary with its tests/ scripts, run-suite.sh and the
# lists, init.pjd the guest's /init and run-one.sh one boot. The tier SKIPs
# with the reason when that directory or virtiofsd is missing.
#
# Prints
#   pjdfstest: kiln N failed, virtiofsd M failed of T
# then "ok - pjdfstest: no kiln-only failures" or a "not ok" line with each
# kiln-only failure (file, test number, what was tried) on "#" lines; the
# failures both share are listed as "# both:" lines.
#
# PJD_FILES="chmod/00.t rename/09.t" runs only those files (development);
# PJD_SERVERS=kiln skips the virtiofsd leg (no comparison is then made).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=tests/lib/qemu.sh
. tests/lib/qemu.sh

PJD=${KILN_PJDFSTEST:-$(cd .. && pwd)/shared/conformance/pjdfstest}
VIRTIOFSD=${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}
servers=${PJD_SERVERS:-kiln virtiofsd}

qemu_tier pjdfstest
for f in suite/pjdfstest suite/tests suite/run-suite.sh suite/all.list init.pjd run-one.sh; do
	[ -e "$PJD/$f" ] || tier_skip "pjdfstest is not available ($PJD/$f is missing)"
done
case " $servers " in
*" virtiofsd "*)
	[ -x "$VIRTIOFSD" ] || tier_skip "QEMU's virtiofsd is missing ($VIRTIOFSD), nothing to compare with"
	;;
esac
qemu_prereqs vhost-user-fs-device
qemu_guest

# --- the guest: the default initramfs with init.pjd as /init and the suite
# in /pjd (what build-initramfs.sh there stages) ---
abs() { case $1 in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; }
root=$T/rootfs
mkdir -p "$root"
base_initrd=$(abs "$QEMU_INITRD")
# (through a file: cpio stops reading at its trailer, zcat would get EPIPE)
if ! zcat "$base_initrd" >"$T/base.cpio" || ! (cd "$root" && cpio -idm --quiet <"$T/base.cpio"); then
	not_ok "initramfs" "cannot unpack $QEMU_INITRD"
	finish
fi
install -m 0755 "$PJD/init.pjd" "$root/init"
# utimensat/06.t and 07.t ask `id -u nobody` / `id -g nobody`
grep -q '^nobody:' "$root/etc/passwd" 2>/dev/null ||
	echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >>"$root/etc/passwd"
grep -q '^nogroup:' "$root/etc/group" 2>/dev/null || echo 'nogroup:x:65534:' >>"$root/etc/group"
mkdir -p "$root/pjd" "$root/mnt/share"
cp -a "$PJD/suite/." "$root/pjd/"
chmod -R u+w "$root/pjd"
list=all.list
if [ -n "${PJD_FILES:-}" ]; then
	tr ' ' '\n' <<<"$PJD_FILES" | sed '/^$/d' >"$root/pjd/custom.list"
	list=custom.list
fi
nfiles=$(grep -c . "$root/pjd/$list")
initrd=$T/pjd-initramfs.cpio.gz
(cd "$root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --owner=0:0) | gzip -1 >"$initrd"
rm -rf "$root" "$T/base.cpio"

# --- one boot per server, both at once (one QEMU per core) ---
kiln_abs=$(abs "$KILN")
mkdir -p /tmp/pjd # run-one.sh makes its share and socket there
t0=$(now_ms)
pids=()
for s in $servers; do
	KILN=$kiln_abs VIRTIOFSD=$VIRTIOFSD KERNEL=$(abs "$QEMU_KERNEL") INITRD=$initrd MEM=512 \
		bash "$PJD/run-one.sh" "$s" suite "$T/$s" "$list" 300 1500 >"$T/$s.run.log" 2>&1 &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
echo "# suite ran in $(secs $(($(now_ms) - t0))) s ($servers)"

# results SERVER: "FILE NUM" for each failed test, one per line, into
# $T/SERVER.fail (a missing test counts: "FILE missing-K"), the planned
# total into $T/SERVER.total; checks that every file ran.
results() {
	local s=$1 log=$T/$1/console.log files
	if [ ! -s "$log" ]; then
		not_ok "$s: suite" "no console log ($(oneline "$(cat "$T/$s.run.log")"))"
		return 1
	fi
	tr -d '\r' <"$log" >"$T/$s.con"
	awk '
		/^PJDFAIL / { f = $2; n = $5; what = $0; sub(/^.*not ok [0-9]+ ?/, "", what); print f, n, what > FAILS; next }
		/^PJD [^ ]+ plan=/ {
			split($3, a, "="); plan = a[2]; total += plan
			split($7, m, "="); for (i = 1; i <= m[2]; i++) print $2, "missing-" i > FAILS
		}
		END { print total + 0 > TOTAL }' FAILS="$T/$s.fail" TOTAL="$T/$s.total" "$T/$s.con"
	touch "$T/$s.fail"
	files=$(grep -c '^PJD [^ ]* plan=' "$T/$s.con")
	if ! grep -q "^PJD-END files=$nfiles" "$T/$s.con" || [ "$files" -ne "$nfiles" ]; then
		not_ok "$s: suite" "ran $files of $nfiles files; $(oneline "$(grep -E '^PJD-|Kernel panic' "$T/$s.con" | tail -3)")"
		return 1
	fi
	ok "$s: the suite ran all $nfiles files"
}

kiln_fail=0
vfsd_fail=0
total=0
results kiln
kiln_ran=$?
# failed: "not ok" without "# TODO" (pjdfstest's known Linux deviations,
# which TAP does not count as failures) and missing tests; the kiln-only
# comparison below still looks at every "not ok"
count_failed() {
	local n
	n=$(grep -vc ' # TODO' "$T/$1.fail" 2>/dev/null)
	echo "${n:-0}"
}
count_todo() {
	local n
	n=$(grep -c ' # TODO' "$T/$1.fail" 2>/dev/null)
	echo "${n:-0}"
}
kiln_fail=$(count_failed kiln)
total=$(cat "$T/kiln.total" 2>/dev/null || echo 0)
if [ "$(grep -c . "$T/kiln/share-leftover.txt" 2>/dev/null || echo 0)" -gt 0 ] &&
	! grep -q 'PJD-LEFTOVER 0' "$T/kiln.con" 2>/dev/null; then
	echo "# files left in kiln's share: $(oneline "$(head -5 "$T/kiln/share-leftover.txt")")"
fi
if grep -q 'alive_after_disconnect=yes' "$T/kiln/meta.txt" 2>/dev/null &&
	! grep -q sigterm_ignored "$T/kiln/meta.txt"; then
	ok "kiln: the server outlived the guest and stopped on SIGTERM"
else
	not_ok "kiln: server" "$(oneline "$(cat "$T/kiln/meta.txt" "$T/kiln/server.log" 2>/dev/null | tail -5)")"
fi

case " $servers " in
*" virtiofsd "*) ;;
*)
	echo "pjdfstest: kiln $kiln_fail failed of $total (virtiofsd not run; $(count_todo kiln) TODO)"
	cut -c1-200 "$T/kiln.fail" | sed 's/^/#   kiln: /' | head -40
	finish
	;;
esac

results virtiofsd
vfsd_ran=$?
vfsd_fail=$(count_failed virtiofsd)
vtotal=$(cat "$T/virtiofsd.total" 2>/dev/null || echo 0)
[ "$vtotal" -gt "$total" ] && total=$vtotal
echo "pjdfstest: kiln $kiln_fail failed, virtiofsd $vfsd_fail failed of $total"
echo "# TODO (known Linux deviations, not failures): kiln $(count_todo kiln), virtiofsd $(count_todo virtiofsd)"

if [ "$kiln_ran" -ne 0 ] || [ "$vfsd_ran" -ne 0 ]; then
	not_ok "kiln-only failures" "a run did not complete, nothing to compare"
	finish
fi
# keyed by "FILE NUM": kiln-only, and both
cut -d' ' -f1,2 "$T/virtiofsd.fail" | sort -u >"$T/vfsd.keys"
awk 'NR == FNR { v[$1 " " $2] = 1; next } !(($1 " " $2) in v)' "$T/vfsd.keys" "$T/kiln.fail" >"$T/kiln-only"
awk 'NR == FNR { v[$1 " " $2] = 1; next } (($1 " " $2) in v)' "$T/vfsd.keys" "$T/kiln.fail" >"$T/both"
cut -c1-200 "$T/both" | sed 's/^/# both: /'
n=$(wc -l <"$T/kiln-only")
if [ "$n" -eq 0 ]; then
	ok "no kiln-only failures ($(wc -l <"$T/both") shared with virtiofsd, from the guest kernel)"
else
	not_ok "kiln-only failures" "$n tests fail on kiln's share and pass on virtiofsd's"
	cut -c1-200 "$T/kiln-only" | sed 's/^/#   /' | head -60
fi
finish
