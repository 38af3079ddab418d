package pmem_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/guest/storage"
	"github.com/uvmgcs/gcs/guest/storage/dm"
	"github.com/uvmgcs/gcs/guest/storage/dm/dmtest"
	"github.com/uvmgcs/gcs/guest/storage/pmem"
	"github.com/uvmgcs/gcs/guest/storage/storagetest"
	"github.com/uvmgcs/gcs/protocol"
)

// copyNode makes dst a node of the same kind and numbers as the device
// whose sysfs "dev" file is devFile.
func copyNode(t *testing.T, devFile, dst string, mode uint32) {
	t.Helper()
	b, err := os.ReadFile(devFile)
	if err != nil {
		t.Fatal(err)
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(dst, mode|0o600, int(unix.Mkdev(major, minor))); err != nil {
		t.Fatal(err)
	}
}

// TestModifyVPMem drives a sliced dm-verity layer through the storage
// Manager on fake roots: the device root has no mapper/control, so the
// Manager's Mapper makes one from the fake sysfs, and its device nodes go
// to the fake device root, not /dev.
func TestModifyVPMem(t *testing.T) {
	ctx := context.Background()
	dir := storagetest.Dir(t)
	dmtest.Mapper(t) // skips without device-mapper
	img, info := dmtest.VerityImage(t, dir, "layer", map[string]string{"id": "layer\n"})
	loop := storagetest.AttachLoop(t, img, true)
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}

	sys, dev := filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
	storagetest.WriteTree(t, filepath.Join(sys, "block", "pmem0"), nil)
	copyNode(t, filepath.Join("/sys/block", loop, "dev"), filepath.Join(dev, "pmem0"), unix.S_IFBLK)
	ctl := filepath.Join(sys, "class", "misc", "device-mapper")
	b, err := os.ReadFile("/sys/class/misc/device-mapper/dev")
	if err != nil {
		t.Fatal(err)
	}
	storagetest.WriteTree(t, ctl, map[string]string{"dev": string(b)})

	run := filepath.Join(dir, "run")
	m, err := storage.New(storage.Config{SysRoot: sys, DevRoot: dev, AllowedRoots: []string{run}, DeviceTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	d := protocol.VPMemDevice{
		DeviceNumber: 0,
		MountPath:    filepath.Join(run, "layers", "p0"),
		MappingInfo:  &protocol.VPMemMappingInfo{DeviceSizeInBytes: uint64(fi.Size())},
		VerityInfo:   info,
	}
	if err := m.AddVPMem(ctx, &d); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(d.MountPath, "id")); err != nil || string(b) != "layer\n" {
		t.Fatalf("read %q %v", b, err)
	}
	names := []string{dm.Prefix + pmem.LinearName(0, d.MountPath), dm.Prefix + pmem.VerityName(0, d.MountPath)}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dev, "mapper", n)); err != nil {
			t.Errorf("node of %s: %v", n, err)
		}
	}

	if err := m.RemoveVPMem(ctx, &d); err != nil {
		t.Fatal(err)
	}
	if storagetest.IsMounted(t, d.MountPath) {
		t.Fatal("still mounted")
	}
	ents, _ := os.ReadDir(filepath.Join(dev, "mapper"))
	if len(ents) != 1 || ents[0].Name() != "control" {
		t.Fatalf("%s/mapper holds %v, want only control", dev, ents)
	}
	devs, err := dm.New(dm.Config{DevRoot: dev, SysRoot: sys}).List()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		for _, n := range names {
			if d.Name == n {
				t.Errorf("%s is still a device", n)
			}
		}
	}
}
