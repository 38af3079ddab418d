#!/usr/bin/env bash
# Builds the utility VM's boot files from Debian packages and our static
# binaries, around one of two kernels (KERNEL=uvm|debian, default uvm):
#
#   uvm      built by rootfs/kernel.sh from Debian's linux-source-6.1 and
#            rootfs/kernel.config: what the agent uses built in, cached in
#            CACHE/uvm-kernel/ by source version and config digest
#   debian   the linux-image package linux-image-amd64 names, its modules
#            loaded at boot or on first use
#
#
#   OUT/initrd.img      lz4 (legacy format) newc cpio: busybox, /init, /bin/gcs, the kernel
#                       modules of rootfs/modules.txt with their dependencies,
#                       and the init's load lists /etc/modules-load (QEMU)
#                       and /etc/modules-load.hyperv (Hyper-V)
#   OUT/rootfs.tar.gz   the same tree as a tar
#   OUT/vmlinux         the kernel's uncompressed ELF image (boots faster than
#                       the bzImage under TCG)
#
# Usage:
#   rootfs/build.sh --versions          print the inputs apt decides: the kernel
#                                       source or package and version (and the
#                                       UVM kernel's config digest), busybox-static's
#   rootfs/build.sh OUT GCS INIT        build; the kernel (.deb or UVM build) is
#                                       cached in CACHE (default OUT/cache)
#
# Same inputs, same bytes: entries are sorted, owned by 0:0, stamped with
# SOURCE_DATE_EPOCH (default 0), and compressed without names or times.
# KERNEL_PKG=linux-image-<abi>-amd64 picks a kernel other than the one
# linux-image-amd64 names. The kernel package is unpacked, never installed.
set -euo pipefail
export LC_ALL=C TZ=UTC
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
epoch=${SOURCE_DATE_EPOCH:-0}
kernel=${KERNEL:-uvm}
case $kernel in uvm | debian) ;; *) echo "rootfs/build.sh: KERNEL=$kernel: want uvm or debian" >&2; exit 1 ;; esac

die() { echo "rootfs/build.sh: $*" >&2; exit 1; }

# kernel_package prints the kernel package linux-image-amd64 depends on.
kernel_package() {
	if [[ -n ${KERNEL_PKG:-} ]]; then
		echo "$KERNEL_PKG"
		return
	fi
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}

candidate_version() {
	apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }'
}

# versions prints the kernel's inputs (the Debian package and version, or the
# UVM kernel's source version and config digest), then "busybox-static
# <version>" on the last line.
versions() {
	local pkg ver
	if [[ $kernel == uvm ]]; then
		"$here/kernel.sh" --versions
		echo "busybox-static $(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || die "busybox-static is not installed")"
		return
	fi
	pkg=$(kernel_package)
	if [[ -z $pkg ]]; then
		# apt's lists are missing or stale (a fresh image): fetch them once.
		apt-get update -qq >&2
		pkg=$(kernel_package)
	fi
	[[ -n $pkg ]] || die "apt knows no linux-image-amd64; is a Debian archive configured?"
	ver=$(candidate_version "$pkg")
	[[ -n $ver ]] || die "apt has no version of $pkg"
	echo "$pkg $ver"
	echo "busybox-static $(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || die "busybox-static is not installed")"
}

# extract_vmlinux BZIMAGE OUT writes the ELF inside a bzImage: its compressed
# payload starts at (setup_sects+1)*512 + payload_offset (boot protocol 2.08+).
extract_vmlinux() {
	local bz=$1 out=$2 setup_sects payload_offset payload_length start magic
	[[ $(dd if="$bz" bs=1 skip=$((0x202)) count=4 status=none) == HdrS ]] || die "$bz: not a bzImage"
	setup_sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$bz" | tr -d ' ')
	if ((setup_sects == 0)); then setup_sects=4; fi
	payload_offset=$(od -An -tu4 -j $((0x248)) -N4 "$bz" | tr -d ' ')
	payload_length=$(od -An -tu4 -j $((0x24c)) -N4 "$bz" | tr -d ' ')
	start=$(((setup_sects + 1) * 512 + payload_offset))
	magic=$(od -An -tx1 -j "$start" -N6 "$bz" | tr -d ' \n')
	case $magic in
	fd377a585a00) ;;
	*) die "$bz: payload at $start is not xz (magic $magic)" ;;
	esac
	dd if="$bz" iflag=skip_bytes,count_bytes skip="$start" count="$payload_length" bs=1M status=none |
		xz -dc --single-stream >"$out"
	[[ $(od -An -tx1 -N4 "$out" | tr -d ' \n') == 7f454c46 ]] || die "$bz: the payload is not an ELF image"
}

# module_closure DIR KVER MODULE... prints the .ko paths (relative to the
# modules directory) that loading each MODULE in turn needs, dependencies
# first, each once. Soft dependencies are included.
module_closure() {
	local dir=$1 kver=$2 m
	shift 2
	for m in "$@"; do
		modprobe -d "$dir" -S "$kver" --show-depends "$m" ||
			die "module $m: not in kernel $kver"
	done | awk -v prefix="$dir/lib/modules/$kver/" '
		$1 == "insmod" && !seen[$2]++ { print substr($2, length(prefix) + 1) }'
}

# write_load_list DIR KVER FILE MARKER writes FILE: the closure of the
# modules modules.txt marks "boot" or MARKER, in its order, as paths of the
# uncompressed .ko files relative to the modules directory.
write_load_list() {
	local dir=$1 kver=$2 file=$3 marker=$4 rel kept list
	local mods=()
	mapfile -t mods < <(sed 's/#.*//' "$here/modules.txt" | awk -v m="$marker" '$2 == "boot" || $2 == m { print $1 }')
	list=$(module_closure "$dir" "$kver" "${mods[@]}")
	: >"$file"
	while IFS= read -r rel; do
		[[ -n $rel ]] || continue
		kept=${rel%.xz}
		echo "${kept%.zst}" >>"$file"
	done <<<"$list"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

build() {
	local out=$1 gcs=$2 init=$3
	[[ -x $gcs ]] || die "$gcs: no agent binary (make build)"
	[[ -x $init ]] || die "$init: no init binary"
	mkdir -p "$out/cache"
	out=$(cd "$out" && pwd)

	local cache=${CACHE:-$out/cache}
	mkdir -p "$cache"
	local vers pkg ver bbver
	vers=$(versions)
	pkg=$(head -n1 <<<"$vers")
	bbver=$(tail -n1 <<<"$vers" | cut -d' ' -f2)
	local busybox
	busybox=$(dpkg-query -L busybox-static | grep -m1 '/busybox$')
	[[ -x $busybox ]] || die "busybox-static ships no busybox binary"
	if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is not static"; fi

	local work
	work=$(mktemp -d "$out/.rootfs.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$work'" EXIT

	# The kernel: kdir holds lib/modules/<kver> (modules, modules.builtin).
	local kdir kver kinput
	if [[ $kernel == uvm ]]; then
		kdir=$("$here/kernel.sh" "$cache")
		kver=$(cat "$kdir/release")
		cp "$kdir/vmlinux" "$work/vmlinux"
		kinput="$(sha "$kdir/vmlinux") vmlinux ($(tr '\n' ' ' <<<"$vers" | sed 's/ busybox-static.*//'))"
	else
		read -r pkg ver <<<"$pkg"
		local deb="$cache/${pkg}_${ver//:/%3a}_amd64.deb"
		if [[ ! -f $deb ]]; then
			echo "downloading $pkg $ver"
			(cd "$cache" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver")
			[[ -f $deb ]] || die "apt-get download left no $deb"
		fi
		# Unpacked, never installed.
		kdir=$work/kernel
		dpkg-deb -x "$deb" "$kdir"
		kver=$(ls "$kdir/lib/modules")
		[[ $kver =~ ^[^[:space:]]+$ ]] || die "$deb: expected one modules directory, found: $kver"
		extract_vmlinux "$kdir/boot/vmlinuz-$kver" "$work/vmlinux"
		depmod -b "$kdir" "$kver"
		kinput="$(sha "$deb") $(basename "$deb")"
	fi

	local tree=$work/tree
	mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,mnt,root,etc,info,lib/modules/"$kver"}
	chmod 1777 "$tree/tmp"
	chmod 0700 "$tree/root"

	# Modules, uncompressed, with their own modules.dep for busybox modprobe.
	local bad
	bad=$(sed 's/#.*//' "$here/modules.txt" | awk 'NF > 2 || (NF == 2 && $2 != "boot" && $2 != "qemu" && $2 != "hyperv")')
	[[ -z $bad ]] || die "modules.txt: want \"module [boot|qemu|hyperv]\", not: $bad"
	local mods=()
	mapfile -t mods < <(sed 's/#.*//' "$here/modules.txt" | awk 'NF { print $1 }')
	local closure=() rel src dst kept list
	list=$(module_closure "$kdir" "$kver" "${mods[@]}")
	# Built-in modules have no .ko: the UVM kernel's closure is short.
	[[ -z $list ]] || mapfile -t closure <<<"$list"
	local mdir=$tree/lib/modules/$kver
	# The boot lists, each a closure in dependency order: the init loads
	# one of them (modules.txt says which when).
	write_load_list "$kdir" "$kver" "$tree/etc/modules-load" qemu
	write_load_list "$kdir" "$kver" "$tree/etc/modules-load.hyperv" hyperv
	for rel in "${closure[@]}"; do
		src=$kdir/lib/modules/$kver/$rel
		kept=${rel%.xz}
		kept=${kept%.zst}
		dst=$mdir/$kept
		mkdir -p "$(dirname "$dst")"
		case $rel in
		*.ko.xz) xz -dc "$src" >"$dst" ;;
		*.ko.zst) zstd -qdc "$src" >"$dst" ;;
		*.ko) cp "$src" "$dst" ;;
		*) die "module $rel: unknown format" ;;
		esac
		chmod 0644 "$dst"
	done
	cp "$kdir/lib/modules/$kver"/{modules.order,modules.builtin,modules.builtin.modinfo} "$mdir/"
	depmod -b "$tree" "$kver"
	# depmod's binary indexes and our text list: modprobe needs no more.
	rm -f "$mdir/modules.builtin.modinfo"

	# busybox and its applets; /init is ours, so no init or linuxrc applet.
	cp "$busybox" "$tree/bin/busybox"
	local applet
	for applet in $("$tree/bin/busybox" --list-full); do
		case $applet in bin/busybox | sbin/init | linuxrc) continue ;; esac
		[[ -e $tree/$applet ]] || ln -s /bin/busybox "$tree/$applet"
	done
	install -m 0755 "$gcs" "$tree/bin/gcs"
	install -m 0755 "$init" "$tree/init"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$tree/etc/passwd"
	printf 'root:x:0:\n' >"$tree/etc/group"
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$tree/etc/hosts"

	# /info: what this tree was made from.
	echo "$kver" >"$tree/info/kernel-version"
	printf '%s\n' "$vers" >"$tree/info/packages"
	{
		echo "$kinput"
		echo "$(sha "$busybox") busybox"
		echo "$(sha "$gcs") gcs"
		echo "$(sha "$init") init"
		echo "$(sha "$here/build.sh") build.sh"
		echo "$(sha "$here/modules.txt") modules.txt"
		echo "KERNEL=$kernel"
		echo "SOURCE_DATE_EPOCH=$epoch"
	} >"$tree/info/inputs"
	sha "$tree/info/inputs" >"$tree/info/inputs.sha256"

	# Same bytes for the same inputs. The initrd is lz4 rather than gzip:
	# the kernel unpacks it in about 120 ms under TCG against 270 ms, for
	# about 20% more bytes; the kernel takes lz4's legacy format (-l) only.
	find "$tree" -exec touch -h -d "@$epoch" {} +
	(cd "$tree" && find . -mindepth 1 -printf '%P\n' | sort |
		cpio --quiet --reproducible -o -H newc -R 0:0) | lz4 -l -9 -q >"$work/initrd.img"
	tar -C "$tree" --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
		--format=gnu -cf - . | gzip -9n >"$work/rootfs.tar.gz"

	mv -f "$work/vmlinux" "$work/initrd.img" "$work/rootfs.tar.gz" "$out/"
	printf 'kernel %s (%s), %d modules (a QEMU boot loads %d, a Hyper-V boot %d), busybox-static %s, inputs %s\n' \
		"$kver" "$kernel: $pkg" "${#closure[@]}" "$(wc -l <"$tree/etc/modules-load")" \
		"$(wc -l <"$tree/etc/modules-load.hyperv")" "$bbver" "$(cat "$tree/info/inputs.sha256")"
	ls -l "$out/initrd.img" "$out/rootfs.tar.gz" "$out/vmlinux"
}

case ${1:-} in
--versions) versions ;;
-h | --help | "") sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*)
	[[ $# -eq 3 ]] || die "usage: $0 OUT GCS INIT"
	build "$@"
	;;
esac
