package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/storagetest"
	"github.com/uvmgcs/gcs/protocol"
)

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{{}, {SysRoot: "/sys", DevRoot: "/dev", AllowedRoots: []string{"/"}}} {
		if _, err := New(cfg); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	m, err := New(Config{SysRoot: t.TempDir(), DevRoot: t.TempDir(), AllowedRoots: []string{root}, DeviceTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"missing vpmem", m.AddVPMem(ctx, &protocol.VPMemDevice{MountPath: root + "/p0"}), context.DeadlineExceeded},
		{"mapped directory without a tag", m.AddShare(ctx, &protocol.MappedDirectory{MountPath: root + "/d"}), errdefs.ErrInvalidArgument},
		{"mapped directory over a port", m.AddShare(ctx, &protocol.MappedDirectory{MountPath: root + "/d", Port: 5}), errdefs.ErrNotImplemented},
		{"disk traversal", m.AddDisk(ctx, &protocol.MappedVirtualDisk{MountPath: root + "/../etc"}), errdefs.ErrInvalidArgument},
		{"disk outside", m.AddDisk(ctx, &protocol.MappedVirtualDisk{MountPath: "/etc/x"}), errdefs.ErrInvalidArgument},
		{"layers outside", m.AddLayers(ctx, &protocol.CombinedLayers{ContainerRootPath: root + "/r", Layers: []protocol.Layer{{Path: "/"}}}), errdefs.ErrInvalidArgument},
		{"missing disk", m.AddDisk(ctx, &protocol.MappedVirtualDisk{MountPath: root + "/m", Controller: 1, Lun: 2}), context.DeadlineExceeded},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	// Removing what was never added is success.
	if err := m.RemoveDisk(ctx, &protocol.MappedVirtualDisk{MountPath: root + "/m"}); err != nil {
		t.Error(err)
	}
	if err := m.RemoveSCSIDevice(ctx, &protocol.SCSIDevice{Lun: 3}); err != nil {
		t.Error(err)
	}
}

// TestLayerStack mounts two layer disks (ext4 and erofs) read-only and a
// scratch disk read-write, combines them, and unwinds it all with Close.
func TestLayerStack(t *testing.T) {
	storagetest.RequireRoot(t)
	ctx := context.Background()
	dir := storagetest.Dir(t)
	sys := filepath.Join(dir, "sys")
	storagetest.SCSIHost(t, sys, 0, "0000:00:04.0", "virtio_scsi")
	storagetest.SCSIHost(t, sys, 1, "0000:00:05.0", "virtio_scsi")
	top := storagetest.AttachLoop(t, storagetest.Ext4Image(t, dir, "top", map[string]string{"etc/hostname": "top\n"}), true)
	base := storagetest.AttachLoop(t, storagetest.EROFSImage(t, dir, "base", map[string]string{"etc/hostname": "base\n", "bin/sh": "sh\n"}), true)
	scratch := storagetest.AttachLoop(t, storagetest.Ext4Image(t, dir, "scratch", nil), false)
	storagetest.SCSIDisk(t, sys, 0, 0, top, 0)
	storagetest.SCSIDisk(t, sys, 0, 1, base, 0)
	scratchDir := storagetest.SCSIDisk(t, sys, 1, 0, scratch, 0)

	run := filepath.Join(dir, "run")
	m, err := New(Config{SysRoot: sys, DevRoot: "/dev", AllowedRoots: []string{run + "/layers", run + "/mounts", run + "/gcs"}})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			m.Close(ctx)
		}
	})
	disks := []protocol.MappedVirtualDisk{
		{MountPath: run + "/layers/p0", Controller: 0, Lun: 0, ReadOnly: true},
		{MountPath: run + "/layers/p1", Controller: 0, Lun: 1, ReadOnly: true},
		{MountPath: run + "/mounts/scsi/m0", Controller: 1, Lun: 0},
	}
	for _, d := range disks {
		if err := m.AddDisk(ctx, &d); err != nil {
			t.Fatal(err)
		}
	}
	c := protocol.CombinedLayers{
		ContainerID:       "c1",
		ContainerRootPath: run + "/gcs/c/c1/rootfs",
		Layers:            []protocol.Layer{{Path: disks[0].MountPath}, {Path: disks[1].MountPath}},
		ScratchPath:       disks[2].MountPath + "/c1",
	}
	if err := m.AddLayers(ctx, &c); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(c.ContainerRootPath + "/etc/hostname")
	if err != nil || string(b) != "top\n" {
		t.Fatalf("hostname %q %v", b, err)
	}
	if err := os.WriteFile(c.ContainerRootPath+"/bin/new", []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if m.Refs(disks[0].MountPath) != 1 || m.Refs(c.ContainerRootPath) != 1 {
		t.Fatal("want one reference on each mount")
	}
	if err := m.RemoveSCSIDevice(ctx, &protocol.SCSIDevice{Controller: 1, Lun: 0}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(scratchDir + "/delete"); string(b) != "1" {
		t.Fatalf("delete holds %q", b)
	}
	if n := len(storagetest.MountsUnder(t, run)); n != 4 {
		t.Fatalf("%d mounts, want 4", n)
	}
	closed = true
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if left := storagetest.MountsUnder(t, run); len(left) != 0 {
		t.Fatalf("Close left %v", left)
	}
}
