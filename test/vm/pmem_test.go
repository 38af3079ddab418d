package vm

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/layer"
	"github.com/uvmgcs/gcs/protocol"
)

// verityLayer builds the busybox layer with a dm-verity hash tree appended.
func verityLayer(t *testing.T) (string, *protocol.VerityInfo) {
	t.Helper()
	if _, err := exec.LookPath("veritysetup"); err != nil {
		t.Skip("SKIP (loud): veritysetup (cryptsetup-bin) is not installed")
	}
	ctx := context.Background()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := layer.Busybox(ctx, "/bin/busybox", tree); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "layer.img")
	if err := layer.FromDir(ctx, tree, img); err != nil {
		t.Fatal(err)
	}
	v, err := layer.AppendVerity(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	return img, v
}

// TestVMVPMemVerityLayer: a layer hot-added as virtio-pmem, checked by
// dm-verity in the guest, runs a container; the modules it needs load on
// first use.
func TestVMVPMemVerityLayer(t *testing.T) {
	m := shared.get(t)
	gc := m.gc()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, v := verityLayer(t)
	n, err := m.m.AddPMem(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	dev := protocol.VPMemDevice{DeviceNumber: n, MountPath: "/run/layers/pmem-test", VerityInfo: v}
	if err := gc.AddVPMemDevice(ctx, dev); err != nil {
		t.Fatalf("mount the pmem layer: %v\nconsole:\n%s", err, m.console)
	}
	root := host.GuestBundleRoot + "/vmpmem/rootfs"
	if err := gc.CombineLayers(ctx, protocol.CombinedLayers{ContainerRootPath: root, Layers: []protocol.Layer{{Path: dev.MountPath}}}); err != nil {
		t.Fatal(err)
	}
	spec := host.DefaultSpec(root, []string{"sh", "-c", "echo on-pmem"}, false)
	spec.Root.Readonly = true
	c, err := gc.CreateContainer(ctx, "vmpmem", spec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.CreateProcess(ctx, &protocol.ProcessParameters{CreateStdOutPipe: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := collect(t, p); r.stdout != "on-pmem\n" {
		t.Fatalf("container on pmem: %+v", r)
	}
	c.Wait()
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := gc.RemoveCombinedLayers(ctx, protocol.CombinedLayers{ContainerRootPath: root}); err != nil {
		t.Fatal(err)
	}
	if err := gc.RemoveVPMemDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	if r := run(t, gc, "sh", "-c", "ls /dev/mapper | grep -c uvmgcs; grep -c pmem-test /proc/mounts"); r.stdout != "0\n0\n" {
		t.Fatalf("left in the VM: %q", r.stdout)
	}
}

// TestVMVerityBadDigest: a SCSI layer whose root digest is wrong is refused
// with a clear error, and the agent keeps serving.
func TestVMVerityBadDigest(t *testing.T) {
	m := shared.get(t)
	gc := m.gc()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, v := verityLayer(t)
	d, err := m.m.AddSCSIDisk(ctx, img, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		gc.RemoveSCSIDevice(ctx, d.Controller, d.LUN)
		m.m.RemoveSCSIDisk(ctx, d)
	}()
	good := protocol.MappedVirtualDisk{Controller: d.Controller, Lun: d.LUN, ReadOnly: true, MountPath: "/run/layers/verity-good", VerityInfo: v}
	if err := gc.AddSCSIDisk(ctx, good); err != nil {
		t.Fatalf("good digest: %v", err)
	}
	if err := gc.RemoveSCSIDisk(ctx, good); err != nil {
		t.Fatal(err)
	}
	bad := good
	bv := *v
	bv.RootDigest = strings.Repeat("0", len(v.RootDigest))
	bad.VerityInfo, bad.MountPath = &bv, "/run/layers/verity-bad"
	err = gc.AddSCSIDisk(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "verity") {
		t.Fatalf("bad digest: %v, want a dm-verity error", err)
	}
	if r := run(t, gc, "sh", "-c", "ls /dev/mapper | grep -c uvmgcs; grep -c verity- /proc/mounts"); r.stdout != "0\n0\n" {
		t.Fatalf("left in the VM after a refused mount: %q", r.stdout)
	}
}
