//go:build linux

package uvm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/uvmgcs/gcs/guest/agent"
	"github.com/uvmgcs/gcs/guest/storage"
	"github.com/uvmgcs/gcs/guest/storage/storagetest"
)

// TestOwnerOnRealGuestStorage drives the guest's storage over the bridge
// through the owner: "SCSI disks" are loop devices a fake sysfs points at,
// hot-plugged by the test machine. Two roots share a layer's mount; the
// last release unmounts everything.
func TestOwnerOnRealGuestStorage(t *testing.T) {
	storagetest.RequireRoot(t)
	ctx := context.Background()
	dir := storagetest.Dir(t)
	sys := filepath.Join(dir, "sys")
	storagetest.SCSIHost(t, sys, 0, "0000:00:04.0", "virtio_scsi")
	top := storagetest.Ext4Image(t, dir, "top", map[string]string{"etc/motd": "top\n"})
	base := storagetest.EROFSImage(t, dir, "base", map[string]string{"etc/motd": "base\n", "bin/sh": "sh\n"})
	scratch := storagetest.Ext4Image(t, dir, "scratch", nil)
	run := filepath.Join(dir, "run")
	st, err := storage.New(storage.Config{SysRoot: sys, DevRoot: "/dev", AllowedRoots: []string{run}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(ctx) })

	m := newMachine(t)
	m.res = agent.Resources(st, nil, nil)
	m.plug = func(path string, lun uint8, ro bool) error {
		storagetest.SCSIDisk(t, sys, 0, lun, storagetest.AttachLoop(t, path, ro), 0)
		return nil
	}
	m.unplug = func(lun uint8) {
		os.Remove(filepath.Join(sys, "bus", "scsi", "devices", fmt.Sprintf("0:0:0:%d", lun)))
	}
	u := start(t, m, Options{})

	add := func(path, at string, ro bool) *Resource {
		t.Helper()
		r, err := u.AddSCSI(ctx, path, SCSIOptions{ReadOnly: ro, MountPath: filepath.Join(run, at)})
		if err != nil {
			t.Fatalf("add %s: %v", path, err)
		}
		return r
	}
	topR, baseR, scratchR := add(top, "layers/top", true), add(base, "layers/base", true), add(scratch, "scratch", false)
	root1 := filepath.Join(run, "c1")
	o1, err := u.Combine(ctx, root1, []string{topR.GuestPath(), baseR.GuestPath()}, scratchR.GuestPath())
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(root1 + "/etc/motd"); err != nil || string(b) != "top\n" {
		t.Fatalf("motd %q %v", b, err)
	}
	if err := os.WriteFile(root1+"/bin/new", []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A second root on the same top layer shares its attachment and mount.
	top2 := add(top, "layers/top", true)
	o2, err := u.Combine(ctx, filepath.Join(run, "c2"), []string{top2.GuestPath()}, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Refs(topR.GuestPath()) != 1 || m.attached() != 3 {
		t.Fatalf("the shared layer: %d guest refs, %d disks attached", st.Refs(topR.GuestPath()), m.attached())
	}
	for _, r := range []*Resource{o2, top2, o1, scratchR, baseR} {
		if err := r.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !storagetest.IsMounted(t, topR.GuestPath()) {
		t.Fatal("the top layer was unmounted while a holder is left")
	}
	if err := topR.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// A path the guest refuses is its HRESULT, as errdefs, and the disk
	// goes again.
	if _, err := u.AddSCSI(ctx, top, SCSIOptions{ReadOnly: true, MountPath: run + "/../../etc"}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("traversal: %v", err)
	}
	if left := storagetest.MountsUnder(t, run); len(left) != 0 || m.attached() != 0 {
		t.Fatalf("left: mounts %v, %d disks", left, m.attached())
	}
}
