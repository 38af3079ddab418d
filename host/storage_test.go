//go:build linux

package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/uvmgcs/gcs/guest/bridge"
	"github.com/uvmgcs/gcs/guest/storage"
	"github.com/uvmgcs/gcs/guest/storage/storagetest"
	"github.com/uvmgcs/gcs/protocol"
)

// startResourceGuest runs the guest bridge with res serving the utility
// VM's ModifySettings, and returns the host's connection to it.
func startResourceGuest(t *testing.T, res bridge.Resources) *GuestConnection {
	t.Helper()
	return startGuestWith(t, res).gc
}

// recorder is a Resources that records requests and fails the ones
// failOn names.
type recorder struct {
	mu     sync.Mutex
	reqs   []string
	failOn string
}

func (r *recorder) Modify(ctx context.Context, req protocol.ModificationRequest) error {
	var s struct {
		MountPath, ContainerRootPath, ScratchPath string
		ReadOnly                                  bool
		Lun                                       uint8
		Layers                                    []protocol.Layer
	}
	if err := json.Unmarshal(req.Settings, &s); err != nil {
		return fmt.Errorf("%v: %w", err, protocol.HrVmcomputeInvalidJSON)
	}
	line := fmt.Sprintf("%s %s", req.RequestType, req.ResourceType)
	switch req.ResourceType {
	case protocol.ResourceMappedVirtualDisk:
		line += fmt.Sprintf(" %s ro=%t", s.MountPath, s.ReadOnly)
	case protocol.ResourceCombinedLayers:
		line += fmt.Sprintf(" %s %v %s", s.ContainerRootPath, s.Layers, s.ScratchPath)
	case protocol.ResourceSCSIDevice:
		line += fmt.Sprintf(" lun=%d", s.Lun)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, line)
	if r.failOn != "" && line == r.failOn {
		return fmt.Errorf("refused: %w", protocol.HrInvalidArg)
	}
	return nil
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs = nil
	return out
}

func TestMountLayerStackRequests(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	gc := startResourceGuest(t, rec)
	layers := []protocol.MappedVirtualDisk{{Controller: 0, Lun: 2}, {Controller: 1, Lun: 3, ReadOnly: false}}
	scratch := &protocol.MappedVirtualDisk{Controller: 0, Lun: 4, ReadOnly: true}
	cleanup, err := gc.MountLayerStack(ctx, layers, scratch, "/run/gcs/c/c1/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Add MappedVirtualDisk /run/layers/p2 ro=true",
		"Add MappedVirtualDisk /run/layers/p259 ro=true",
		"Add MappedVirtualDisk /run/mounts/scsi/m4 ro=false",
		"Add CombinedLayers /run/gcs/c/c1/rootfs [{ /run/layers/p2 } { /run/layers/p259 }] /run/mounts/scsi/m4",
	}
	if got := rec.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("requests\n%q\nwant\n%q", got, want)
	}
	if err := cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"Remove CombinedLayers /run/gcs/c/c1/rootfs [{ /run/layers/p2 } { /run/layers/p259 }] /run/mounts/scsi/m4",
		"Remove MappedVirtualDisk /run/mounts/scsi/m4 ro=false",
		"Remove MappedVirtualDisk /run/layers/p259 ro=true",
		"Remove MappedVirtualDisk /run/layers/p2 ro=true",
	}
	if got := rec.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("cleanup requests\n%q\nwant\n%q", got, want)
	}

	if err := gc.RemoveSCSIDevice(ctx, 0, 2); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); !reflect.DeepEqual(got, []string{"Remove SCSIDevice lun=2"}) {
		t.Fatalf("remove device: %q", got)
	}
}

func TestMountLayerStackUnwindsOnFailure(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{failOn: "Add CombinedLayers /r [{ /run/layers/p1 }] "}
	gc := startResourceGuest(t, rec)
	cleanup, err := gc.MountLayerStack(ctx, []protocol.MappedVirtualDisk{{Lun: 1}}, nil, "/r")
	if !errors.Is(err, protocol.HrInvalidArg) || cleanup != nil {
		t.Fatalf("err = %v, cleanup %v", err, cleanup != nil)
	}
	want := []string{
		"Add MappedVirtualDisk /run/layers/p1 ro=true",
		"Add CombinedLayers /r [{ /run/layers/p1 }] ",
		"Remove MappedVirtualDisk /run/layers/p1 ro=true",
	}
	if got := rec.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("requests\n%q\nwant\n%q", got, want)
	}
}

// TestLayerStackEndToEnd drives the real guest storage over the bridge:
// the "SCSI disks" are loop devices a fake sysfs points at.
func TestLayerStackEndToEnd(t *testing.T) {
	storagetest.RequireRoot(t)
	ctx := context.Background()
	dir := storagetest.Dir(t)
	sys := filepath.Join(dir, "sys")
	storagetest.SCSIHost(t, sys, 0, "0000:00:04.0", "virtio_scsi")
	top := storagetest.AttachLoop(t, storagetest.Ext4Image(t, dir, "top", map[string]string{"etc/motd": "top\n"}), true)
	base := storagetest.AttachLoop(t, storagetest.EROFSImage(t, dir, "base", map[string]string{"etc/motd": "base\n", "bin/sh": "sh\n"}), true)
	scratch := storagetest.AttachLoop(t, storagetest.Ext4Image(t, dir, "scratch", nil), false)
	storagetest.SCSIDisk(t, sys, 0, 0, top, 0)
	storagetest.SCSIDisk(t, sys, 0, 1, base, 0)
	storagetest.SCSIDisk(t, sys, 0, 2, scratch, 0)
	run := filepath.Join(dir, "run")
	st, err := storage.New(storage.Config{SysRoot: sys, DevRoot: "/dev", AllowedRoots: []string{run}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(ctx) })
	gc := startResourceGuest(t, st)

	layers := []protocol.MappedVirtualDisk{{Lun: 0, MountPath: run + "/layers/p0"}, {Lun: 1, MountPath: run + "/layers/p1"}}
	sd := &protocol.MappedVirtualDisk{Lun: 2, MountPath: run + "/mounts/scsi/m2"}
	rootfs := run + "/gcs/c/c1/rootfs"
	cleanup, err := gc.MountLayerStack(ctx, layers, sd, rootfs)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(rootfs + "/etc/motd"); err != nil || string(b) != "top\n" {
		t.Fatalf("motd %q %v", b, err)
	}
	if err := os.WriteFile(rootfs+"/bin/new", []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}

	// A second container on the same layers shares their mounts.
	cleanup2, err := gc.MountLayerStack(ctx, layers, nil, run+"/gcs/c/c2/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	if st.Refs(layers[0].MountPath) != 2 {
		t.Fatalf("layer refs %d, want 2", st.Refs(layers[0].MountPath))
	}
	if err := cleanup2(ctx); err != nil {
		t.Fatal(err)
	}

	// Bad paths come back as the guest's HRESULT.
	err = gc.AddSCSIDisk(ctx, protocol.MappedVirtualDisk{Lun: 0, MountPath: run + "/../../etc"})
	if !errors.Is(err, protocol.HrInvalidArg) {
		t.Fatalf("traversal: %v", err)
	}
	if err := cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if left := storagetest.MountsUnder(t, run); len(left) != 0 {
		t.Fatalf("mounts left: %v", left)
	}
}
