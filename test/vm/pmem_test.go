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
	"github.com/uvmgcs/gcs/host/uvm"
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
	pm, err := m.u.AddPMem(ctx, img, uvm.PMemOptions{MountPath: "/run/layers/pmem-test", VerityInfo: v})
	if err != nil {
		t.Fatalf("mount the pmem layer: %v\nconsole:\n%s", err, m.console)
	}
	root := uvm.RootPath("vmpmem")
	overlay, err := m.u.Combine(ctx, root, []string{pm.GuestPath()}, "")
	if err != nil {
		t.Fatal(err)
	}
	spec := host.DefaultSpec(root, []string{"sh", "-c", "echo on-pmem"}, false)
	spec.Root.Readonly = true
	c, err := m.u.CreateContainer(ctx, "vmpmem", spec, uvm.ContainerConfig{Hold: []*uvm.Resource{pm, overlay}})
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
	good, err := m.u.AddSCSI(ctx, img, uvm.SCSIOptions{ReadOnly: true, MountPath: "/run/layers/verity-good", VerityInfo: v})
	if err != nil {
		t.Fatalf("good digest: %v", err)
	}
	if err := good.Release(ctx); err != nil {
		t.Fatal(err)
	}
	bv := *v
	bv.RootDigest = strings.Repeat("0", len(v.RootDigest))
	_, err = m.u.AddSCSI(ctx, img, uvm.SCSIOptions{ReadOnly: true, MountPath: "/run/layers/verity-bad", VerityInfo: &bv})
	if err == nil || !strings.Contains(err.Error(), "verity") {
		t.Fatalf("bad digest: %v, want a dm-verity error", err)
	}
	assertNothingAttached(t, m)
	if r := run(t, gc, "sh", "-c", "ls /dev/mapper | grep -c uvmgcs; grep -c verity- /proc/mounts"); r.stdout != "0\n0\n" {
		t.Fatalf("left in the VM after a refused mount: %q", r.stdout)
	}
}
