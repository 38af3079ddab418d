#!/usr/bin/env bash
# libseccomp-musl.sh VERSION DEST
#
# Builds libseccomp VERSION (a release tag, e.g. v2.6.0) as a static library
# for musl, into DEST: lib/libseccomp.a, include/, lib/pkgconfig/ and
# kernel-headers/ (the Linux UAPI headers, which musl-gcc does not search:
# libseccomp and libcontainer's nsexec include them). The agent links it
# (see the Makefile's out/gcs). The source is the release tag as the Go
# module proxy serves it (github.com/seccomp/libseccomp), so it comes the
# same way as every other source this project builds; the tag has no
# generated files, so autotools and gperf make them. DEST/.done is written
# last: a DEST without it is an interrupted build and is redone.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 VERSION DEST" >&2; exit 2; }
version=$1 dest=$2
GO=${GO:-go}

src=$(cd / && GOFLAGS=-mod=mod "$GO" mod download -json "github.com/seccomp/libseccomp@${version}+incompatible" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "$0: libseccomp $version: no source from the module proxy" >&2; exit 1; }

rm -rf "$dest"
mkdir -p "$dest/kernel-headers"
multiarch=$(gcc -print-multiarch)
ln -s /usr/include/linux "$dest/kernel-headers/linux"
ln -s "/usr/include/$multiarch/asm" "$dest/kernel-headers/asm"
ln -s /usr/include/asm-generic "$dest/kernel-headers/asm-generic"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src/." "$work"
chmod -R u+w "$work"
# Module zips keep no file modes: the scripts the build runs get theirs back.
grep -rlI '^#!' "$work" | xargs -r chmod +x

cd "$work"
log="$work/build.log"
{
	./autogen.sh
	CC=musl-gcc CFLAGS="-O2 -I$dest/kernel-headers" ./configure --prefix="$dest" --enable-static --disable-shared
	make -j"$(nproc)" -C src
	make -C src install
	make -C include install
	make libseccomp.pc
	mkdir -p "$dest/lib/pkgconfig"
	cp libseccomp.pc "$dest/lib/pkgconfig/"
} >"$log" 2>&1 || { tail -30 "$log" >&2; echo "$0: building libseccomp $version for musl failed" >&2; exit 1; }
touch "$dest/.done"
echo "libseccomp $version for musl in $dest"
