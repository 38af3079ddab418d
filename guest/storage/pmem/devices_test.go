package pmem

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/dm"
	"github.com/uvmgcs/gcs/guest/storage/dm/dmtest"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/guest/storage/storagetest"
	"github.com/uvmgcs/gcs/protocol"
)

// fakePmem makes device n of the fake roots the loop device loop (loopN):
// sysfs knows pmem<n>, and dev/pmem<n> has the loop device's numbers.
func fakePmem(t *testing.T, sys, dev string, n uint32, loop string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/block", loop, "dev"))
	if err != nil {
		t.Fatal(err)
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err != nil {
		t.Fatal(err)
	}
	sysDisk(t, sys, Name(n))
	if err := unix.Mknod(filepath.Join(dev, Name(n)), unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil {
		t.Fatal(err)
	}
}

// setup returns Devices on fake roots whose mounts must lie beneath
// dir/run, with device-mapper devices named by the test's own Mapper.
func setup(t *testing.T) (ctx context.Context, dir, sys, dev string, m *dm.Mapper, p *Devices, table *mounts.Table) {
	t.Helper()
	storagetest.RequireRoot(t)
	ctx = context.Background()
	dir = storagetest.Dir(t)
	m = dmtest.Mapper(t)
	sys, dev = filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
	for _, d := range []string{filepath.Join(sys, "block"), dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	table, err := mounts.New([]string{filepath.Join(dir, "run")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := table.UnwindAll(ctx); err != nil {
			t.Error(err)
		}
	})
	p = New(NewLocator(Config{SysRoot: sys, DevRoot: dev, Timeout: 2 * time.Second}), m, table)
	return ctx, dir, sys, dev, m, p, table
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func requireNothingLeft(t *testing.T, m *dm.Mapper, run string) {
	t.Helper()
	if left := storagetest.MountsUnder(t, run); len(left) != 0 {
		t.Fatalf("mounts left: %v", left)
	}
	if left, err := m.Owned(); err != nil || len(left) != 0 {
		t.Fatalf("device-mapper devices left: %v %v", left, err)
	}
}

func TestVerityLayer(t *testing.T) {
	ctx, dir, sys, dev, m, p, table := setup(t)
	img, info := dmtest.VerityImage(t, dir, "layer", map[string]string{"etc/os-release": "ID=pmem\n"})
	fakePmem(t, sys, dev, 0, storagetest.AttachLoop(t, img, true))
	run := filepath.Join(dir, "run")
	d := &protocol.VPMemDevice{DeviceNumber: 0, MountPath: filepath.Join(run, "layers", "p0"), VerityInfo: info}

	// Twice: one mount, two references.
	for i := 0; i < 2; i++ {
		if err := p.Add(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if n := table.Refs(d.MountPath); n != 2 {
		t.Fatalf("%d references, want 2", n)
	}
	if left := storagetest.MountsUnder(t, run); len(left) != 1 {
		t.Fatalf("mounts %v, want one", left)
	}
	if got := readFile(t, filepath.Join(d.MountPath, "etc/os-release")); got != "ID=pmem\n" {
		t.Fatalf("read %q", got)
	}
	if st, err := m.Status(VerityName(0, d.MountPath)); err != nil || len(st) != 1 || st[0].Params != "V" {
		t.Fatalf("verity status %+v %v", st, err)
	}
	if err := os.WriteFile(filepath.Join(d.MountPath, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to a layer: %v, want EROFS", err)
	}
	for i := 0; i < 2; i++ {
		if err := p.Remove(ctx, d); err != nil {
			t.Fatal(err)
		}
		if mounted := storagetest.IsMounted(t, d.MountPath); mounted != (i == 0) {
			t.Fatalf("after %d removes mounted=%t", i+1, mounted)
		}
	}
	requireNothingLeft(t, m, run)
	if err := p.Remove(ctx, d); err != nil {
		t.Fatalf("removing again: %v", err)
	}

	// A root digest that does not match is refused, clearly, and
	// leaves nothing behind.
	bad := *d
	badInfo := *info
	badInfo.RootDigest = strings.Repeat("0", len(info.RootDigest))
	bad.VerityInfo = &badInfo
	err := p.Add(ctx, &bad)
	if !errors.Is(err, dm.ErrVerity) || !strings.Contains(err.Error(), "dm-verity: root digest mismatch or corrupt data") {
		t.Fatalf("bad digest: %v", err)
	}
	t.Logf("wrong root digest refused: %v", err)
	if table.Refs(d.MountPath) != 0 {
		t.Fatal("a failed add holds a reference")
	}
	requireNothingLeft(t, m, run)
}

// TestLinearSlices: one device holds two layers, a plain ext4 one and a
// dm-verity one; each is mounted from its slice.
func TestLinearSlices(t *testing.T) {
	ctx, dir, sys, dev, m, p, table := setup(t)
	plain := storagetest.Ext4Image(t, dir, "plain", map[string]string{"id": "plain\n"})
	verity, info := dmtest.VerityImage(t, dir, "verity", map[string]string{"id": "verity\n"})
	all, offsets := dmtest.Concat(t, dir, "all", 4096, plain, verity)
	fakePmem(t, sys, dev, 3, storagetest.AttachLoop(t, all, true))
	size := func(img string) uint64 {
		fi, err := os.Stat(img)
		if err != nil {
			t.Fatal(err)
		}
		return uint64(fi.Size())
	}
	run := filepath.Join(dir, "run")
	layers := []*protocol.VPMemDevice{{
		DeviceNumber: 3, MountPath: filepath.Join(run, "layers", "p3-0"),
		MappingInfo: &protocol.VPMemMappingInfo{DeviceOffsetInBytes: uint64(offsets[0]), DeviceSizeInBytes: size(plain)},
	}, {
		DeviceNumber: 3, MountPath: filepath.Join(run, "layers", "p3-1"),
		MappingInfo: &protocol.VPMemMappingInfo{DeviceOffsetInBytes: uint64(offsets[1]), DeviceSizeInBytes: size(verity)},
		VerityInfo:  info,
	}}
	for _, d := range layers {
		if err := p.Add(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []string{"plain\n", "verity\n"} {
		if got := readFile(t, filepath.Join(layers[i].MountPath, "id")); got != want {
			t.Errorf("layer %d reads %q, want %q", i, got, want)
		}
	}
	if owned, err := m.Owned(); err != nil || len(owned) != 3 {
		t.Fatalf("device-mapper devices %v %v, want two slices and a verity device", owned, err)
	}
	table2, err := m.Table(LinearName(3, layers[1].MountPath))
	if err != nil || len(table2) != 1 || table2[0].Type != "linear" ||
		!strings.HasSuffix(table2[0].Params, fmt.Sprintf(" %d", offsets[1]/dm.SectorSize)) {
		t.Fatalf("slice table %+v %v", table2, err)
	}

	// Another slice at a mounted path is refused; a slice past the end
	// of the device is bad input.
	other := *layers[0]
	other.MountPath = layers[1].MountPath
	if err := p.Add(ctx, &other); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("different slice at a mounted path: %v", err)
	}
	past := *layers[0]
	past.MountPath = filepath.Join(run, "layers", "past")
	past.MappingInfo = &protocol.VPMemMappingInfo{DeviceOffsetInBytes: uint64(offsets[1]), DeviceSizeInBytes: 64 << 20}
	if err := p.Add(ctx, &past); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("slice past the end: %v", err)
	}

	for _, d := range layers {
		if err := p.Remove(ctx, d); err != nil {
			t.Fatal(err)
		}
		if table.Refs(d.MountPath) != 0 {
			t.Fatalf("%s still held", d.MountPath)
		}
	}
	requireNothingLeft(t, m, run)
}

// TestAddRefusesBadInput: descriptions no device can satisfy are refused
// before waiting for the device.
func TestAddRefusesBadInput(t *testing.T) {
	sys, dev := fakeRoots(t)
	root := t.TempDir()
	table, err := mounts.New([]string{root})
	if err != nil {
		t.Fatal(err)
	}
	p := New(NewLocator(Config{SysRoot: sys, DevRoot: dev, Timeout: time.Hour}), dm.New(dm.Config{DevRoot: dev, SysRoot: sys}), table)
	for name, d := range map[string]*protocol.VPMemDevice{
		"empty slice":     {MappingInfo: &protocol.VPMemMappingInfo{DeviceOffsetInBytes: 4096}},
		"unaligned slice": {MappingInfo: &protocol.VPMemMappingInfo{DeviceOffsetInBytes: 100, DeviceSizeInBytes: 4096}},
		"verity version":  {VerityInfo: &protocol.VerityInfo{Version: 2, BlockSize: 4096, Ext4SizeInBytes: 4096, Algorithm: "sha256", RootDigest: "00"}},
		"outside roots":   {MountPath: "/etc/layer"},
	} {
		d.MountPath = cmp.Or(d.MountPath, filepath.Join(root, "p"))
		if err := p.Add(context.Background(), d); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
