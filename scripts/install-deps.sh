#!/usr/bin/env bash
# Installs the Debian 12 packages kiln needs to build, test and benchmark.
# Idempotent; run as root (or through sudo).
set -euo pipefail
PKGS=(
	build-essential pkg-config          # compiler, make
	libcmocka-dev                       # unit tests
	clang libclang-rt-14-dev            # fuzzing and sanitizers
	qemu-system-x86                     # Linux-driver tier and benchmark peer
	busybox-static cpio gzip            # the default guest's initramfs
	linux-source-6.1 bc flex bison libelf-dev libssl-dev xz-utils  # guest kernel
	e2fsprogs                           # disk images
	libslirp-dev                        # user-mode NAT (--net user)
	zlib1g-dev qemu-utils               # qcow2 (compressed clusters); qemu-img for its interop tests
	libcurl4-openssl-dev                # HTTP(S) disk images
	liburing-dev fio                    # asynchronous disk I/O; fio for its benchmark
	util-linux                          # setpriv, flock
	python3 python3-pytest python3-setuptools python3-pip  # the Python SDK and its tests
)
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all packages present"
	exit 0
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
