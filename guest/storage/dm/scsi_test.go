package dm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/dm"
	"github.com/uvmgcs/gcs/guest/storage/dm/dmtest"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/guest/storage/scsi"
	"github.com/uvmgcs/gcs/guest/storage/storagetest"
	"github.com/uvmgcs/gcs/protocol"
)

// TestSCSIVerity mounts a read-only SCSI disk (a loop device behind a fake
// sysfs) through dm-verity with scsi.Disks, and refuses a wrong digest.
func TestSCSIVerity(t *testing.T) {
	ctx := context.Background()
	dir := storagetest.Dir(t)
	m := dmtest.Mapper(t)
	img, info := dmtest.VerityImage(t, dir, "layer", files)
	loop := storagetest.AttachLoop(t, img, true)
	sys := filepath.Join(dir, "sys")
	storagetest.SCSIHost(t, sys, 0, "0000:00:04.0", "virtio_scsi")
	storagetest.SCSIDisk(t, sys, 0, 2, loop, 0)
	run := filepath.Join(dir, "run")
	table, err := mounts.New([]string{run})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { table.UnwindAll(ctx) })
	loc := scsi.NewLocator(scsi.Config{SysRoot: sys, DevRoot: "/dev", Timeout: 2 * time.Second})
	disks := scsi.NewDisksWithMapper(loc, table, m)

	d := &protocol.MappedVirtualDisk{MountPath: filepath.Join(run, "m0"), Lun: 2, ReadOnly: true, VerityInfo: info}
	if err := disks.Add(ctx, d); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(d.MountPath, "etc/os-release")); err != nil || string(b) != files["etc/os-release"] {
		t.Fatalf("read %q %v", b, err)
	}
	if err := disks.Remove(ctx, d); err != nil {
		t.Fatal(err)
	}

	// As a block device the link names the verity device.
	link := &protocol.MappedVirtualDisk{MountPath: filepath.Join(run, "b0"), Lun: 2, ReadOnly: true, BlockDev: true, VerityInfo: info}
	if err := disks.Add(ctx, link); err != nil {
		t.Fatal(err)
	}
	if dest, err := os.Readlink(link.MountPath); err != nil || !strings.HasPrefix(dest, "/dev/mapper/"+m.FullName("")) {
		t.Fatalf("link to %q %v", dest, err)
	}
	if err := disks.Remove(ctx, link); err != nil {
		t.Fatal(err)
	}

	bad := *d
	badInfo := *info
	badInfo.RootDigest = strings.Repeat("f", len(info.RootDigest))
	bad.VerityInfo = &badInfo
	err = disks.Add(ctx, &bad)
	if !errors.Is(err, dm.ErrVerity) || !strings.Contains(err.Error(), "dm-verity: root digest mismatch or corrupt data") {
		t.Fatalf("wrong digest: %v", err)
	}
	writable := *d
	writable.ReadOnly = false
	if err := disks.Add(ctx, &writable); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Fatalf("verity on a writable disk: %v", err)
	}
	if left := storagetest.MountsUnder(t, run); len(left) != 0 {
		t.Fatalf("mounts left: %v", left)
	}
	if left, err := m.Owned(); err != nil || len(left) != 0 {
		t.Fatalf("devices left: %v %v", left, err)
	}
}
