// Package dmtest owns the fixtures device-mapper tests share: a Mapper on
// the running kernel whose device names carry a prefix of the test's own
// (so tests of several packages can run at once), checked for devices and
// /dev/mapper nodes left behind when the test ends, and ext4 images with a
// dm-verity hash tree appended by veritysetup.
package dmtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/uvmgcs/gcs/guest/storage/dm"
	"github.com/uvmgcs/gcs/guest/storage/storagetest"
	"github.com/uvmgcs/gcs/protocol"
)

// Mapper returns a Mapper on /dev and /sys with a fresh name prefix, and
// registers a check that no device or node with that prefix is left when
// the test ends (leftovers are removed). It loads dm-verity first and
// skips t, loudly, when the kernel has no device-mapper or no verity
// target. Call it after storagetest.Dir, so the check runs before the
// loop devices are checked.
func Mapper(t testing.TB) *dm.Mapper {
	t.Helper()
	storagetest.RequireRoot(t)
	var modprobe string
	if out, err := exec.Command("modprobe", "dm-verity").CombinedOutput(); err != nil {
		modprobe = fmt.Sprintf("; modprobe dm-verity: %v: %s", err, bytes.TrimSpace(out))
	}
	probe := dm.New(dm.Config{DevRoot: "/dev", SysRoot: "/sys"})
	targets, err := probe.Targets()
	if errors.Is(err, dm.ErrUnavailable) {
		t.Skipf("SKIP (loud): this kernel has no device-mapper: %v%s", err, modprobe)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(targets, "verity") {
		t.Skipf("SKIP (loud): this kernel has no dm-verity target (targets %v)%s", targets, modprobe)
	}
	prefix := fmt.Sprintf("%st%08x-", dm.Prefix, rand.Uint32())
	m := dm.New(dm.Config{DevRoot: "/dev", SysRoot: "/sys", Prefix: prefix})
	t.Cleanup(func() {
		left, err := m.Owned()
		if err != nil {
			t.Errorf("listing device-mapper devices: %v", err)
			return
		}
		if len(left) > 0 {
			t.Errorf("device-mapper devices or /dev/mapper nodes left: %v", left)
		}
		for i := len(left) - 1; i >= 0; i-- {
			_ = m.Remove(context.Background(), strings.TrimPrefix(left[i], prefix))
		}
	})
	return m
}

// VerityImageSize is the size of the filesystem VerityImage builds.
const VerityImageSize = 16 << 20

// VerityImage builds an ext4 image of VerityImageSize bytes in dir holding
// files, appends its dm-verity hash tree (with veritysetup's superblock)
// and returns the image and the VerityInfo a host would send for it.
func VerityImage(t testing.TB, dir, name string, files map[string]string) (string, *protocol.VerityInfo) {
	t.Helper()
	mkfs := tool(t, "mkfs.ext4", "e2fsprogs")
	veritysetup := tool(t, "veritysetup", "cryptsetup-bin")
	src := filepath.Join(dir, name+".src")
	storagetest.WriteTree(t, src, files)
	img := filepath.Join(dir, name+".img")
	// 4 KiB blocks: mke2fs picks 1 KiB for a filesystem this small, and
	// ext4 cannot mount with blocks smaller than the verity device's.
	run(t, mkfs, "-q", "-F", "-b", "4096", "-d", src, img, strconv.Itoa(VerityImageSize>>10)+"k")
	out := run(t, veritysetup, "format", "--hash-offset="+strconv.Itoa(VerityImageSize), img, img)
	info := &protocol.VerityInfo{Ext4SizeInBytes: VerityImageSize, Version: 1, SuperBlock: true}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.TrimSpace(key) {
		case "Root hash":
			info.RootDigest = value
		case "Salt":
			info.Salt = value
		case "Hash algorithm":
			info.Algorithm = value
		case "Data block size":
			n, err := strconv.Atoi(value)
			if err != nil {
				t.Fatalf("veritysetup data block size %q", value)
			}
			info.BlockSize = n
		case "Hash type":
			n, err := strconv.Atoi(value)
			if err != nil {
				t.Fatalf("veritysetup hash type %q", value)
			}
			info.Version = n
		}
	}
	if info.RootDigest == "" || info.Algorithm == "" || info.BlockSize == 0 {
		t.Fatalf("veritysetup format printed no root hash, algorithm or block size:\n%s", out)
	}
	return img, info
}

// Concat writes the files imgs one after another into dir/name.img,
// returns its path and the offset of each, each padded to align bytes.
func Concat(t testing.TB, dir, name string, align int64, imgs ...string) (string, []int64) {
	t.Helper()
	var all []byte
	offsets := make([]int64, len(imgs))
	for i, img := range imgs {
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		offsets[i] = int64(len(all))
		all = append(all, b...)
		if pad := int64(len(all)) % align; pad != 0 {
			all = append(all, make([]byte, align-pad)...)
		}
	}
	out := filepath.Join(dir, name+".img")
	if err := os.WriteFile(out, all, 0o644); err != nil {
		t.Fatal(err)
	}
	return out, offsets
}

// tool returns the path of a program, skipping t loudly without it.
func tool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("SKIP (loud): %s not installed (Debian package %s)", name, pkg)
	}
	return p
}

func run(t testing.TB, prog string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(prog, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
	return out
}
