#!/usr/bin/env bash
# Builds the utility VM's kernel from Debian's linux-source-6.1 package
# and rootfs/kernel.config, once per source version and config: the result
# is cached under CACHE/uvm-kernel/<source version>-<config digest>/ as
#
#   vmlinux                    the uncompressed ELF QEMU boots (PVH entry)
#   bzImage                    the same kernel for boot loaders and HCS
#   config                     the full .config it was built from
#   lib/modules/<release>/     its few modules, modules.builtin, modules.dep
#
# Usage:
#   rootfs/kernel.sh --versions    print the inputs: source package version
#                                  and the config digest
#   rootfs/kernel.sh CACHE         build (when not cached) and print the
#                                  cached directory's path on stdout
#
# The source is the tarball linux-source-6.1 installs under /usr/src
# (`make kernel-deps` installs it and the build tools). The patches in
# rootfs/kernel-patches/ (applied in name order with patch -p1) change the
# source for the UVM's case. The config is
# `make allnoconfig` plus rootfs/kernel.config, completed by
# `make olddefconfig`; an option of the fragment that does not survive
# (a missing dependency) fails the build. KERNEL_JOBS (default: the
# number of CPUs) and nice -n 10 bound the build's share of the machine.
set -euo pipefail
export LC_ALL=C TZ=UTC
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/kernel.config
patches=$here/kernel-patches
srcpkg=linux-source-6.1
tarball=/usr/src/$srcpkg.tar.xz

die() { echo "rootfs/kernel.sh: $*" >&2; exit 1; }

source_version() {
	dpkg-query -W -f='${Version}' "$srcpkg" 2>/dev/null || die "$srcpkg is not installed (make kernel-deps)"
}

# The digest covers what decides the kernel's bytes besides the source:
# the fragment, the patches and this script.
config_digest() {
	cat "$fragment" "$patches"/*.patch "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16
}

# patches_digest: what decides the patched source besides its version.
patches_digest() {
	cat "$patches"/*.patch | sha256sum | cut -c1-16
}

versions() {
	echo "$srcpkg $(source_version)"
	echo "uvm-kernel-config $(config_digest)"
}

# check_config CONFIG: every CONFIG_X=y|m|n of the fragment holds in CONFIG.
check_config() {
	local config=$1 line opt val got bad=()
	while IFS= read -r line; do
		line=${line%%#*}
		[[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]] || continue
		opt=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
		got=$(grep -E "^$opt=|^# $opt is not set" "$config" || true)
		case $val in
		n) [[ -z $got || $got == "# $opt is not set" ]] || bad+=("$opt=n but $got") ;;
		*) [[ $got == "$opt=$val" ]] || bad+=("$opt=$val but ${got:-unset}") ;;
		esac
	done <"$fragment"
	((${#bad[@]} == 0)) || die "kernel.config: options olddefconfig did not keep (missing dependencies?):
  $(printf '%s\n  ' "${bad[@]}")"
}

build() {
	local cache=$1 ver digest dir src obj jobs
	ver=$(source_version)
	digest=$(config_digest)
	mkdir -p "$cache"
	cache=$(cd "$cache" && pwd)
	dir=$cache/uvm-kernel/${ver}-${digest}
	if [[ -f $dir/vmlinux && -f $dir/bzImage ]]; then
		echo "$dir"
		return
	fi
	[[ -f $tarball ]] || die "$tarball is missing (make kernel-deps)"
	# The unpacked source is shared by every config of one version; a
	# changed set of patches unpacks it again and applies them.
	src=$cache/uvm-kernel/src-$ver
	local pd p
	pd=$(patches_digest)
	if [[ ! -f $src/.unpacked || "$(cat "$src/.unpacked")" != "$pd" ]]; then
		echo "unpacking $tarball" >&2
		rm -rf "$src"
		mkdir -p "$src"
		tar -C "$src" --strip-components=1 -xf "$tarball"
		for p in "$patches"/*.patch; do
			patch -s -d "$src" -p1 <"$p" || die "$p does not apply"
		done
		echo "$pd" >"$src/.unpacked"
	fi
	# One object tree per source version: a changed config rebuilds only
	# what depends on the options that changed.
	obj=$cache/uvm-kernel/build-$ver
	mkdir -p "$obj"
	jobs=${KERNEL_JOBS:-$(nproc)}
	local mk=(nice -n 10 make -s -C "$src" O="$obj" ARCH=x86_64 -j"$jobs"
		KBUILD_BUILD_TIMESTAMP="@${SOURCE_DATE_EPOCH:-0}" KBUILD_BUILD_USER=uvmgcs
		KBUILD_BUILD_HOST=uvmgcs LOCALVERSION=-uvm)
	"${mk[@]}" allnoconfig >&2
	"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$fragment" >/dev/null
	"${mk[@]}" olddefconfig >&2
	check_config "$obj/.config"
	echo "building the UVM kernel ($srcpkg $ver, config $digest, -j$jobs)" >&2
	local t0=$SECONDS
	"${mk[@]}" bzImage modules >&2
	local stage=$dir.tmp release
	rm -rf "$stage"
	mkdir -p "$stage"
	"${mk[@]}" INSTALL_MOD_PATH="$stage" INSTALL_MOD_STRIP=1 DEPMOD=/sbin/depmod modules_install >&2
	release=$(cat "$obj/include/config/kernel.release")
	rm -f "$stage/lib/modules/$release"/{build,source}
	cp "$obj/vmlinux" "$stage/vmlinux"
	strip --strip-debug "$stage/vmlinux"
	cp "$obj/arch/x86/boot/bzImage" "$stage/bzImage"
	cp "$obj/.config" "$stage/config"
	echo "$release" >"$stage/release"
	rm -rf "$dir"
	mv "$stage" "$dir"
	echo "built $release in $((SECONDS - t0)) s" >&2
	echo "$dir"
}

case ${1:-} in
--versions) versions ;;
-h | --help | "") sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*)
	[[ $# -eq 1 ]] || die "usage: $0 CACHE"
	build "$1"
	;;
esac
