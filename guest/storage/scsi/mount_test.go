package scsi

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/guest/storage/storagetest"
	"github.com/uvmgcs/gcs/protocol"
)

var layerFiles = map[string]string{"etc/os-release": "ID=test\n", "bin/tool": "#!/bin/sh\n"}

// mountOptionsOf returns the per-mount and superblock options of target.
func mountOptionsOf(t *testing.T, target string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == target {
			return f[5] + " " + f[len(f)-1]
		}
	}
	t.Fatalf("%s is not mounted", target)
	return ""
}

func TestDetect(t *testing.T) {
	storagetest.RequireRoot(t)
	dir := storagetest.Dir(t)
	ext4 := storagetest.Ext4Image(t, dir, "ext4", layerFiles)
	blank := storagetest.BlankImage(t, dir, "blank", 1<<20)
	for img, want := range map[string]string{ext4: Ext4, blank: ""} {
		if got, err := DetectFilesystem(img); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", img, got, err, want)
		}
	}
	erofs := storagetest.EROFSImage(t, dir, "erofs", layerFiles)
	if got, err := DetectFilesystem(erofs); err != nil || got != EROFS {
		t.Errorf("erofs: %q, %v", got, err)
	}
	xfs := make([]byte, 4096)
	copy(xfs, "XFSB")
	if got := detect(xfs); got != XFS {
		t.Errorf("xfs superblock: %q", got)
	}
}

func TestMountReadOnlyExt4(t *testing.T) {
	storagetest.RequireRoot(t)
	ctx := context.Background()
	dir := storagetest.Dir(t)
	img := storagetest.Ext4Image(t, dir, "layer", layerFiles)
	dev := "/dev/" + storagetest.AttachLoop(t, img, true)
	target := filepath.Join(dir, "mnt", "p0")
	undo, err := MountDevice(ctx, dev, target, MountOptions{ReadOnly: true, Options: []string{"nodev"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { undo(ctx) })
	if b, err := os.ReadFile(filepath.Join(target, "etc/os-release")); err != nil || string(b) != "ID=test\n" {
		t.Fatalf("read through mount: %q %v", b, err)
	}
	opts := mountOptionsOf(t, target)
	for _, want := range []string{"ro", "nodev"} {
		if !strings.Contains(opts, want) {
			t.Errorf("mount options %q lack %q", opts, want)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to read-only mount: %v", err)
	}
	if err := undo(ctx); err != nil {
		t.Fatal(err)
	}
	if storagetest.IsMounted(t, target) {
		t.Fatal("still mounted after undo")
	}
	if _, err := os.Stat(filepath.Join(dir, "mnt")); !os.IsNotExist(err) {
		t.Fatalf("mount directories left behind: %v", err)
	}
}

func TestMountReadWriteExt4(t *testing.T) {
	storagetest.RequireRoot(t)
	ctx := context.Background()
	dir := storagetest.Dir(t)
	img := storagetest.Ext4Image(t, dir, "scratch", nil)
	dev := "/dev/" + storagetest.AttachLoop(t, img, false)
	target := filepath.Join(dir, "scratch")
	undo, err := MountDevice(ctx, dev, target, MountOptions{Filesystem: Ext4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { undo(ctx) })
	if err := os.WriteFile(filepath.Join(target, "new"), []byte("x"), 0o644); err != nil {
		t.Fatalf("write to read-write mount: %v", err)
	}
	if err := undo(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMountEROFS(t *testing.T) {
	storagetest.RequireRoot(t)
	ctx := context.Background()
	dir := storagetest.Dir(t)
	img := storagetest.EROFSImage(t, dir, "layer", layerFiles)
	dev := "/dev/" + storagetest.AttachLoop(t, img, true)
	target := filepath.Join(dir, "p1")
	// erofs is read-only even when the request does not say so.
	undo, err := MountDevice(ctx, dev, target, MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { undo(ctx) })
	if b, err := os.ReadFile(filepath.Join(target, "bin/tool")); err != nil || string(b) != "#!/bin/sh\n" {
		t.Fatalf("read through erofs: %q %v", b, err)
	}
	if err := undo(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMountFailureLeavesNothing(t *testing.T) {
	storagetest.RequireRoot(t)
	ctx := context.Background()
	dir := storagetest.Dir(t)
	blank := "/dev/" + storagetest.AttachLoop(t, storagetest.BlankImage(t, dir, "blank", 1<<20), true)
	ext4 := "/dev/" + storagetest.AttachLoop(t, storagetest.Ext4Image(t, dir, "ext4", nil), true)
	for _, tc := range []struct {
		dev  string
		opts MountOptions
		hr   error
	}{
		{blank, MountOptions{ReadOnly: true}, errdefs.ErrInvalidArgument},
		{ext4, MountOptions{Filesystem: XFS}, errdefs.ErrInvalidArgument},
		{ext4, MountOptions{Filesystem: "nfs"}, errdefs.ErrInvalidArgument},
		{ext4, MountOptions{Options: []string{"a,b"}}, errdefs.ErrInvalidArgument},
		{ext4, MountOptions{Options: []string{strings.Repeat("x", 5000)}}, errdefs.ErrInvalidArgument},
		{ext4, MountOptions{ReadOnly: true, Options: []string{"no_such_ext4_option"}}, nil},
	} {
		target := filepath.Join(dir, "m", "target")
		_, err := MountDevice(ctx, tc.dev, target, tc.opts)
		if err == nil || (tc.hr != nil && !errors.Is(err, tc.hr)) {
			t.Errorf("%s %+v: err = %v, want %v", tc.dev, tc.opts, err, tc.hr)
		}
		if storagetest.IsMounted(t, target) {
			t.Fatalf("%+v: mounted after failure", tc.opts)
		}
		if _, err := os.Stat(filepath.Join(dir, "m")); !os.IsNotExist(err) {
			t.Errorf("%+v: directories left after failure: %v", tc.opts, err)
		}
	}
}

func TestLinkDevice(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	target := filepath.Join(dir, "blk", "disk0")
	undo, err := LinkDevice(ctx, "/dev/null", target)
	if err != nil {
		t.Fatal(err)
	}
	if dest, err := os.Readlink(target); err != nil || dest != "/dev/null" {
		t.Fatalf("link: %q %v", dest, err)
	}
	if err := undo(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "blk")); !os.IsNotExist(err) {
		t.Fatalf("link directory left: %v", err)
	}
}

// disksOnLoop returns Disks over a fake sysfs whose SCSI disk at
// controller 0, LUN 1 is a loop device holding an ext4 image, and whose
// allowed root is a fresh directory.
func disksOnLoop(t *testing.T) (*Disks, *mounts.Table, string) {
	t.Helper()
	storagetest.RequireRoot(t)
	dir := storagetest.Dir(t)
	sys := filepath.Join(dir, "sys")
	storagetest.SCSIHost(t, sys, 0, "0000:00:04.0", virtioSCSI)
	loop := storagetest.AttachLoop(t, storagetest.Ext4Image(t, dir, "disk", layerFiles), true)
	storagetest.SCSIDisk(t, sys, 0, 1, loop, 0)
	root := filepath.Join(dir, "run")
	table, err := mounts.New([]string{root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := table.UnwindAll(context.Background()); err != nil {
			t.Error(err)
		}
	})
	loc := NewLocator(Config{SysRoot: sys, DevRoot: "/dev", Timeout: time.Second})
	return NewDisks(loc, table), table, root
}

func TestDisksRefcount(t *testing.T) {
	ctx := context.Background()
	disks, table, root := disksOnLoop(t)
	d := &protocol.MappedVirtualDisk{MountPath: root + "/scsi/m1", Controller: 0, Lun: 1, ReadOnly: true}
	for range 2 {
		if err := disks.Add(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(storagetest.MountsUnder(t, d.MountPath)); n != 1 || table.Refs(d.MountPath) != 2 {
		t.Fatalf("two adds: %d mounts, %d refs", n, table.Refs(d.MountPath))
	}
	if err := disks.Remove(ctx, d); err != nil || !storagetest.IsMounted(t, d.MountPath) {
		t.Fatalf("first remove: %v; still mounted %t", err, storagetest.IsMounted(t, d.MountPath))
	}
	if err := disks.Remove(ctx, d); err != nil || storagetest.IsMounted(t, d.MountPath) {
		t.Fatalf("second remove: %v; still mounted %t", err, storagetest.IsMounted(t, d.MountPath))
	}

	// The same disk at the same path read-write is a different mount.
	if err := disks.Add(ctx, d); err != nil {
		t.Fatal(err)
	}
	rw := *d
	rw.ReadOnly = false
	if err := disks.Add(ctx, &rw); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("conflicting add: %v", err)
	}
	if err := disks.Remove(ctx, d); err != nil {
		t.Fatal(err)
	}
}

func TestDisksBlockDevAndErrors(t *testing.T) {
	ctx := context.Background()
	disks, _, root := disksOnLoop(t)
	d := &protocol.MappedVirtualDisk{MountPath: root + "/blk/d1", Lun: 1, BlockDev: true}
	if err := disks.Add(ctx, d); err != nil {
		t.Fatal(err)
	}
	if dest, err := os.Readlink(d.MountPath); err != nil || !strings.HasPrefix(dest, "/dev/loop") {
		t.Fatalf("block device link: %q %v", dest, err)
	}
	if err := disks.Remove(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(d.MountPath); !os.IsNotExist(err) {
		t.Fatalf("link left: %v", err)
	}

	for _, tc := range []struct {
		d  protocol.MappedVirtualDisk
		hr error
	}{
		{protocol.MappedVirtualDisk{MountPath: root + "/../etc", Lun: 1}, errdefs.ErrInvalidArgument},
		{protocol.MappedVirtualDisk{MountPath: "/etc/m", Lun: 1}, errdefs.ErrInvalidArgument},
		{protocol.MappedVirtualDisk{MountPath: root + "/m", Lun: 2}, context.DeadlineExceeded},
		{protocol.MappedVirtualDisk{MountPath: root + "/m", Lun: 1, Encrypted: true}, errdefs.ErrNotImplemented},
		{protocol.MappedVirtualDisk{MountPath: root + "/m", Lun: 1, VerityInfo: &protocol.VerityInfo{}}, errdefs.ErrNotImplemented},
		{protocol.MappedVirtualDisk{MountPath: root + "/m", Lun: 1, EnsureFilesystem: true, Filesystem: XFS}, errdefs.ErrInvalidArgument},
	} {
		if err := disks.Add(ctx, &tc.d); !errors.Is(err, tc.hr) {
			t.Errorf("%+v: %v, want %v", tc.d, err, tc.hr)
		}
	}
	if left := storagetest.MountsUnder(t, root); len(left) != 0 {
		t.Fatalf("failed adds left mounts: %v", left)
	}
	// EnsureFilesystem on a disk that has it mounts it.
	ok := protocol.MappedVirtualDisk{MountPath: root + "/m", Lun: 1, ReadOnly: true, EnsureFilesystem: true}
	if err := disks.Add(ctx, &ok); err != nil {
		t.Fatal(err)
	}
	if err := disks.Remove(ctx, &ok); err != nil {
		t.Fatal(err)
	}
}

// TestEnsureFilesystemFormatsABlankDisk: a blank disk is formatted and
// mounted writable; its contents survive a remount.
func TestEnsureFilesystemFormatsABlankDisk(t *testing.T) {
	storagetest.RequireRoot(t)
	if _, err := exec.LookPath("mke2fs"); err != nil {
		t.Skip("SKIP (loud): mke2fs is not installed (e2fsprogs)")
	}
	ctx := context.Background()
	dir := storagetest.Dir(t)
	sys := filepath.Join(dir, "sys")
	storagetest.SCSIHost(t, sys, 0, "0000:00:04.0", virtioSCSI)
	loop := storagetest.AttachLoop(t, storagetest.BlankImage(t, dir, "blank", 16<<20), false)
	storagetest.SCSIDisk(t, sys, 0, 2, loop, 0)
	root := filepath.Join(dir, "run")
	table, err := mounts.New([]string{root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { table.UnwindAll(context.Background()) })
	disks := NewDisks(NewLocator(Config{SysRoot: sys, DevRoot: "/dev", Timeout: time.Second}), table)
	d := &protocol.MappedVirtualDisk{MountPath: root + "/scratch", Lun: 2, EnsureFilesystem: true}
	if err := disks.Add(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.MountPath, "kept"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := disks.Remove(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := disks.Add(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.MountPath, "kept")); err != nil {
		t.Fatalf("formatted again: %v", err)
	}
	if err := disks.Remove(ctx, d); err != nil {
		t.Fatal(err)
	}
}
