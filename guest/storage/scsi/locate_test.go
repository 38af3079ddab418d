package scsi

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/uevent"

	"github.com/uvmgcs/gcs/guest/storage/storagetest"
)

// fakeSys builds a sysfs with an IDE host, a USB storage host and three
// virtio-scsi hosts, and a device root.
func fakeSys(t *testing.T) (sys, dev string) {
	t.Helper()
	dir := t.TempDir()
	sys, dev = filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
	storagetest.SCSIHost(t, sys, 0, "0000:00:01.1", "ata_piix")
	storagetest.SCSIHost(t, sys, 1, "0000:00:1d.0", "usb-storage")
	storagetest.SCSIHost(t, sys, 2, "0000:00:04.0", virtioSCSI)
	storagetest.SCSIHost(t, sys, 3, "0000:00:0a.0", virtioSCSI)
	storagetest.SCSIHost(t, sys, 4, "0000:00:10.0", virtioSCSI)
	return sys, dev
}

func TestControllerHosts(t *testing.T) {
	sys, _ := fakeSys(t)
	hosts, err := ControllerHosts(sys)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{2, 3, 4}; !slices.Equal(hosts, want) {
		t.Fatalf("controller hosts %v, want %v", hosts, want)
	}
	hosts, err = ControllerHosts(t.TempDir())
	if err != nil || len(hosts) != 0 {
		t.Fatalf("no scsi_host class: %v %v", hosts, err)
	}
}

// TestControllerHostsFollowPCIOrder: a controller on a lower PCI address
// is the lower controller index even when its host number is higher.
func TestControllerHostsFollowPCIOrder(t *testing.T) {
	sys := filepath.Join(t.TempDir(), "sys")
	storagetest.SCSIHost(t, sys, 7, "0000:00:03.0", virtioSCSI)
	storagetest.SCSIHost(t, sys, 6, "0000:00:05.0", virtioSCSI)
	hosts, err := ControllerHosts(sys)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{7, 6}; !slices.Equal(hosts, want) {
		t.Fatalf("controller hosts %v, want %v", hosts, want)
	}
}

func TestPartitionName(t *testing.T) {
	for _, tc := range []struct {
		disk string
		n    uint64
		want string
	}{{"sda", 0, "sda"}, {"sda", 1, "sda1"}, {"sdab", 12, "sdab12"}, {"loop3", 0, "loop3"}, {"loop3", 2, "loop3p2"}, {"nvme0n1", 1, "nvme0n1p1"}} {
		if got := PartitionName(tc.disk, tc.n); got != tc.want {
			t.Errorf("PartitionName(%q, %d) = %q, want %q", tc.disk, tc.n, got, tc.want)
		}
	}
}

func TestLookup(t *testing.T) {
	storagetest.RequireRoot(t) // device nodes
	sys, dev := fakeSys(t)
	storagetest.SCSIDisk(t, sys, 3, 7, "sdb", 2)
	storagetest.SCSIDisk(t, sys, 2, 0, "sda", 0)
	for _, n := range []string{"sda", "sdb", "sdb1", "sdb2"} {
		storagetest.BlockNode(t, dev, n)
	}
	l := NewLocator(Config{SysRoot: sys, DevRoot: dev})
	for _, tc := range []struct {
		c, lun uint8
		part   uint64
		want   string // "" = not present
	}{
		{0, 0, 0, "sda"},
		{1, 7, 0, "sdb"},
		{1, 7, 2, "sdb2"},
		{1, 7, 3, ""},
		{0, 7, 0, ""},
		{2, 7, 0, ""},
		{3, 0, 0, ""},
	} {
		got, err := l.Lookup(tc.c, tc.lun, tc.part)
		switch {
		case tc.want == "" && !errors.Is(err, errNotPresent):
			t.Errorf("controller %d lun %d partition %d: %q, %v; want not present", tc.c, tc.lun, tc.part, got, err)
		case tc.want != "" && (err != nil || got != filepath.Join(dev, tc.want)):
			t.Errorf("controller %d lun %d partition %d: %q, %v; want %s", tc.c, tc.lun, tc.part, got, err, tc.want)
		}
	}

	// A partition sysfs knows whose node is missing is not there yet.
	storagetest.SCSIDisk(t, sys, 4, 1, "sdc", 1)
	storagetest.BlockNode(t, dev, "sdc")
	if _, err := l.Lookup(2, 1, 1); !errors.Is(err, errNotPresent) {
		t.Errorf("partition without a node: %v", err)
	}

	// A configured table replaces discovery.
	l = NewLocator(Config{SysRoot: sys, DevRoot: dev, Hosts: map[uint8]uint32{5: 3}})
	if got, err := l.Lookup(5, 7, 1); err != nil || got != filepath.Join(dev, "sdb1") {
		t.Errorf("with table: %q, %v", got, err)
	}
	if _, err := l.Lookup(0, 0, 0); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("controller outside the table: %v", err)
	}
}

// chanWatcher wakes Find when the test says so.
type chanWatcher chan struct{}

func (c chanWatcher) Wait(ctx context.Context) error {
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c chanWatcher) Close() error { return nil }

func TestFindTimesOut(t *testing.T) {
	sys, dev := fakeSys(t)
	l := NewLocator(Config{SysRoot: sys, DevRoot: dev, Timeout: 100 * time.Millisecond})
	l.watch = func() (uevent.Watcher, error) { return make(chanWatcher), nil }
	start := time.Now()
	_, err := l.Find(context.Background(), 1, 3, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	for _, want := range []string{"controller 1", "lun 3", "did not appear within 100ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("timeout error %q does not say %q", err, want)
		}
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("timeout took %v", time.Since(start))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Find(ctx, 1, 3, 0); !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestFindWakesOnEvent(t *testing.T) {
	storagetest.RequireRoot(t)
	sys, dev := fakeSys(t)
	events := make(chanWatcher)
	l := NewLocator(Config{SysRoot: sys, DevRoot: dev, Timeout: time.Minute})
	l.watch = func() (uevent.Watcher, error) { return events, nil }
	found := make(chan error, 1)
	go func() {
		got, err := l.Find(context.Background(), 2, 9, 0)
		if err == nil && got != filepath.Join(dev, "sdd") {
			err = errors.New("found " + got)
		}
		found <- err
	}()
	events <- struct{}{} // an unrelated event: Find looks and waits again
	storagetest.SCSIDisk(t, sys, 4, 9, "sdd", 0)
	storagetest.BlockNode(t, dev, "sdd")
	var err error
	select {
	case events <- struct{}{}:
		err = <-found
	case err = <-found: // it looked while the disk was being added
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestFindFallsBackToPolling(t *testing.T) {
	storagetest.RequireRoot(t)
	sys, dev := fakeSys(t)
	l := NewLocator(Config{SysRoot: sys, DevRoot: dev, Timeout: time.Minute})
	l.watch = func() (uevent.Watcher, error) { return nil, errors.New("no netlink here") }
	found := make(chan error, 1)
	go func() {
		_, err := l.Find(context.Background(), 0, 1, 0)
		found <- err
	}()
	time.Sleep(100 * time.Millisecond) // let it look and find nothing first
	storagetest.SCSIDisk(t, sys, 2, 1, "sde", 0)
	storagetest.BlockNode(t, dev, "sde")
	if err := <-found; err != nil {
		t.Fatal(err)
	}
}

func TestDelete(t *testing.T) {
	sys, dev := fakeSys(t)
	devDir := storagetest.SCSIDisk(t, sys, 3, 4, "sdf", 0)
	l := NewLocator(Config{SysRoot: sys, DevRoot: dev})
	if err := l.Delete(1, 4); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(devDir, "delete")); string(b) != "1" {
		t.Fatalf("delete holds %q, want 1", b)
	}
	for _, tc := range [][2]uint8{{1, 5}, {9, 4}} {
		if err := l.Delete(tc[0], tc[1]); err != nil {
			t.Errorf("deleting absent controller %d lun %d: %v, want success", tc[0], tc[1], err)
		}
	}
}

// TestFindScansTheLUN: a device missing at the first look makes Find ask
// the kernel to scan exactly that LUN on the controller's host.
func TestFindScansTheLUN(t *testing.T) {
	sys, dev := fakeSys(t)
	scan := filepath.Join(sys, "class", "scsi_host", "host3", "scan") // controller 1
	if err := os.WriteFile(scan, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l := NewLocator(Config{SysRoot: sys, DevRoot: dev, Timeout: 100 * time.Millisecond})
	events := make(chanWatcher)
	l.watch = func() (uevent.Watcher, error) { return events, nil }
	done := make(chan error, 1)
	go func() {
		_, err := l.Find(context.Background(), 1, 3, 0)
		done <- err
	}()
	events <- struct{}{} // a second look
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout: no disk appeared", err)
	}
	if b, _ := os.ReadFile(scan); string(b) != "0 0 3" {
		t.Errorf("scan file holds %q, want \"0 0 3\"", b)
	}
	if err := l.Scan(7, 0); err == nil {
		t.Error("scan of a controller that is not there: no error")
	}
}
