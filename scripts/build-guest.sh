#!/usr/bin/env bash
# Build (or reuse) kiln's default guest: a minimal Linux kernel from Debian's
# linux-source-6.1 plus a busybox-static initramfs.
#
# Usage: scripts/build-guest.sh OUTDIR
#
# Results are cached outside the repository, keyed by everything that affects
# them, in
#   ${KILN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}/guest-<hash>/
#     vmlinux             uncompressed ELF, boots through its PVH note
#     bzImage             compressed kernel (gzip)
#     initramfs.cpio.gz   busybox-static + guest/init
#     config              the full kernel .config (for reference)
# where <hash> = first 16 hex digits of sha256 over guest/kernel.config,
# guest/init, this script, and the installed versions of linux-source-6.1 and
# busybox-static. A complete cache dir is reused as is (fast path); else the
# kernel is built in a temp dir next to it (about 4 min on 2 cores), which is
# renamed into place when finished, under flock so concurrent runs build once.
# OUTDIR then gets copies of the three files (only rewritten when they differ,
# so their mtimes stay put for make). With KILN_AGENT_BIN=PATH, OUTDIR's
# initramfs.cpio.gz is the cached one followed by a second gzip'd cpio
# holding /sbin/kiln-agent (the kernel unpacks concatenated archives in
# order); the agent stays out of the hash, so rebuilding it never rebuilds
# the kernel. The agent starts as PID 1 with rdinit=/sbin/kiln-agent.
#
# Environment: V=1 shows the kernel build output instead of logging it;
# KILN_CACHE_DIR overrides the cache root.
set -euo pipefail

die() {
	echo "build-guest: error: $*" >&2
	exit 1
}
note() { echo "build-guest: $*" >&2; }

if [ $# -ne 1 ] || [ -z "$1" ]; then
	die "usage: $0 OUTDIR"
fi
outdir=$1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
self="$root/scripts/build-guest.sh"
fragment="$root/guest/kernel.config"
init_script="$root/guest/init"
ksrc_tar=/usr/src/linux-source-6.1.tar.xz
busybox_bin=/bin/busybox
files="vmlinux bzImage initramfs.cpio.gz"

[ -f "$fragment" ] || die "missing $fragment"
[ -f "$init_script" ] || die "missing $init_script"
command -v dpkg-query >/dev/null || die "dpkg-query not found: the guest build needs Debian's linux-source-6.1 package"

# Installed version of a Debian package, or a clear error.
pkg_version() {
	local st
	st=$(dpkg-query -W -f='${db:Status-Abbrev}|${Version}' "$1" 2>/dev/null) || st=
	case "$st" in
	ii*) echo "${st#*|}" ;;
	*) die "package $1 is not installed: run scripts/install-deps.sh" ;;
	esac
}

ksrc_ver=$(pkg_version linux-source-6.1)
busybox_ver=$(pkg_version busybox-static)

# Hash input: each file's content under a header line, then the versions.
hash_inputs() { # FRAGMENT INIT SCRIPT
	printf '== guest/kernel.config\n'; cat "$1"
	printf '\n== guest/init\n'; cat "$2"
	printf '\n== scripts/build-guest.sh\n'; cat "$3"
	printf '\n== linux-source-6.1 %s\n== busybox-static %s\n' "$ksrc_ver" "$busybox_ver"
}
hash=$(hash_inputs "$fragment" "$init_script" "$self" | sha256sum | cut -c1-16)

cache_root=${KILN_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/kiln}
name="guest-$hash"
cache="$cache_root/$name"

complete() {
	local f
	for f in $files; do [ -s "$1/$f" ] || return 1; done
}

agent_bin=${KILN_AGENT_BIN:-}
if [ -n "$agent_bin" ]; then
	[ -f "$agent_bin" ] && [ -x "$agent_bin" ] || die "KILN_AGENT_BIN=$agent_bin is not an executable file"
fi

# The cached initramfs, plus the agent archive when there is an agent.
compose_initramfs() { # DEST
	local stage
	cp "$cache/initramfs.cpio.gz" "$1" || return 1
	[ -n "$agent_bin" ] || return 0
	stage=$(mktemp -d "$outdir/.agent.XXXXXX") || return 1
	mkdir "$stage/sbin" && install -m 0755 "$agent_bin" "$stage/sbin/kiln-agent" &&
		touch -d @0 "$stage/sbin" "$stage/sbin/kiln-agent" &&
		(cd "$stage" && printf 'sbin\nsbin/kiln-agent\n' |
			cpio --quiet -o -H newc --owner=0:0 --reproducible) | gzip -9 -n >>"$1"
	local rc=$?
	rm -rf "$stage"
	return $rc
}

# Copy the cached files into OUTDIR, rewriting only those that differ.
populate() {
	local f src
	mkdir -p "$outdir" || die "cannot create $outdir"
	for f in $files; do
		src="$cache/$f"
		if [ "$f" = initramfs.cpio.gz ]; then
			compose_initramfs "$outdir/.$f.new" || die "cannot add $agent_bin to the initramfs"
			src="$outdir/.$f.new"
		fi
		if ! cmp -s "$src" "$outdir/$f"; then
			{ cp "$src" "$outdir/.$f.tmp" && mv -f "$outdir/.$f.tmp" "$outdir/$f"; } ||
				die "cannot copy $f into $outdir"
		fi
	done
	rm -f "$outdir/.initramfs.cpio.gz.new"
	echo "guest: $outdir (cache $cache)${agent_bin:+ + agent $agent_bin}"
}

# Fast path: the cache dir only ever appears complete (atomic rename).
if complete "$cache"; then
	populate
	exit 0
fi

# ---- slow path: build ------------------------------------------------------

[ "$(uname -m)" = x86_64 ] || die "the guest is built natively for x86_64; this host is $(uname -m)"
for p in bc bison flex libelf-dev libssl-dev cpio make gcc xz-utils; do
	pkg_version "$p" >/dev/null
done
[ -f "$ksrc_tar" ] || die "$ksrc_tar is missing: run scripts/install-deps.sh"
[ -x "$busybox_bin" ] || die "$busybox_bin is missing: run scripts/install-deps.sh"
command -v flock >/dev/null || die "flock not found (util-linux)"

mkdir -p "$cache_root" || die "cannot create cache dir $cache_root"

# One builder per hash: others wait here, then find the result done.
exec 9>"$cache_root/$name.lock"
if ! flock -n 9; then
	note "another build of $name is running; waiting for it"
	flock 9
fi
if complete "$cache"; then
	populate
	exit 0
fi

# We hold the lock: leftovers of an interrupted build can go.
rm -rf "$cache_root/$name".tmp.* "$cache"
tmp=$(mktemp -d "$cache_root/$name.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Build from snapshots of the inputs, and make sure they are what we hashed
# (someone may be editing them right now).
cp "$fragment" "$tmp/kernel.config"
cp "$init_script" "$tmp/init"
cp "$self" "$tmp/build-guest.sh"
[ "$(hash_inputs "$tmp/kernel.config" "$tmp/init" "$tmp/build-guest.sh" | sha256sum | cut -c1-16)" = "$hash" ] ||
	die "guest inputs changed while starting the build; run it again"

log="$cache_root/$name.log"
: >"$log"
verbose=${V:-0}
# Run a build step in a subshell with its own `set -e` (a function called
# from `if` would run with errexit off), output to the log (and to the
# terminal with V=1); on failure show the end of the log.
step() { # DESCRIPTION CMD...
	local what=$1 rc
	shift
	note "$what"
	set +e
	if [ "$verbose" = 1 ]; then
		(set -e; "$@") 2>&1 | tee -a "$log"
	else
		(set -e; "$@") >>"$log" 2>&1
	fi
	rc=$?
	set -e
	if [ "$rc" -ne 0 ]; then
		[ "$verbose" = 1 ] || tail -n 40 "$log" >&2
		die "$what failed (exit $rc; full log: $log)"
	fi
}

# A parent make (e.g. the project's Makefile) must not leak its flags or
# variables into the kernel's make.
unset MAKEFLAGS MFLAGS MAKELEVEL GNUMAKEFLAGS MAKEOVERRIDES
unset KBUILD_OUTPUT KCONFIG_CONFIG CROSS_COMPILE LLVM KCFLAGS KCPPFLAGS KAFLAGS
export ARCH=x86_64 KBUILD_BUILD_USER=kiln KBUILD_BUILD_HOST=kiln
kmake=(make -j"$(nproc)")
[ "$verbose" = 1 ] && kmake+=(V=1)

start=$(date +%s)
step "unpacking $ksrc_tar into $tmp" tar -C "$tmp" -xf "$ksrc_tar"
src="$tmp/linux-source-6.1"
[ -f "$src/Makefile" ] || die "$ksrc_tar did not unpack to linux-source-6.1/"

# allnoconfig + tinyconfig's fragments + ours, then olddefconfig. (Runs in
# step's subshell, so the cd stays there.)
configure() {
	cd "$src"
	scripts/kconfig/merge_config.sh -n kernel/configs/tiny-base.config \
		kernel/configs/tiny.config arch/x86/configs/tiny.config "$tmp/kernel.config"
	make olddefconfig
}
step "configuring the kernel (guest/kernel.config)" configure

# Kconfig silently drops options whose dependencies are unmet: check that
# every line of the fragment made it into .config.
missing=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*)
		grep -qxF -- "$line" "$src/.config" && continue
		have=$(grep -E "^(# )?${line%%=*}[= ]" "$src/.config" || true)
		echo "build-guest: wanted $line, .config has: ${have:-nothing (dependencies unmet or not an option)}" >&2
		missing=1
		;;
	"# CONFIG_"*" is not set")
		sym=${line#\# }
		sym=${sym%% *}
		grep -q "^$sym=" "$src/.config" || continue
		echo "build-guest: wanted $sym off, .config has: $(grep "^$sym=" "$src/.config")" >&2
		missing=1
		;;
	esac
done <"$tmp/kernel.config"
[ "$missing" = 0 ] || die "guest/kernel.config options are missing from the kernel .config (see above)"

step "building the kernel (${kmake[*]} vmlinux bzImage)" \
	"${kmake[@]}" -C "$src" vmlinux bzImage

out="$tmp/$name"
mkdir "$out"
cp "$src/vmlinux" "$out/vmlinux"
cp "$src/arch/x86/boot/bzImage" "$out/bzImage"
cp "$src/.config" "$out/config"

# The initramfs: busybox, a symlink per applet, our /init. Packed root-owned
# so it can be built without root.
build_initramfs() {
	local stage="$tmp/initramfs" path
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,etc}
	chmod 0700 "$stage/root"
	chmod 1777 "$stage/tmp"
	cp "$busybox_bin" "$stage/bin/busybox"
	chmod 0755 "$stage/bin/busybox"
	# Like `busybox --install -s`, but done here on the host.
	"$busybox_bin" --list-full >"$tmp/applets"
	while IFS= read -r path; do
		case "$path" in "" | bin/busybox | linuxrc) continue ;; esac
		mkdir -p "$stage/${path%/*}"
		ln -s /bin/busybox "$stage/$path"
	done <"$tmp/applets"
	install -m 0755 "$tmp/init" "$stage/init"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
	printf 'root:x:0:\n' >"$stage/etc/group"
	# /dev/console is not needed here: the kernel's built-in initramfs
	# (usr/default_cpio_list) already has it.
	(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
		cpio --quiet -o -H newc --owner=0:0) | gzip -9 -n >"$out/initramfs.cpio.gz"
}
step "packing the initramfs (busybox-static $busybox_ver)" build_initramfs

complete "$out" || die "build finished without all of: $files"
mv -T "$out" "$cache"
elapsed=$(($(date +%s) - start))
note "built $name in $((elapsed / 60))m$((elapsed % 60))s"

populate
