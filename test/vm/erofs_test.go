package vm

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/layer"
	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/protocol"
)

// TestVMErofsLayer: an erofs layer, whose module the VM does not load at
// boot, mounts (the agent loads erofs on first use) and runs a container
// read-only (no scratch).
func TestVMErofsLayer(t *testing.T) {
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		t.Skip("SKIP (loud): mkfs.erofs (erofs-utils) is not installed")
	}
	m := shared.get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := layer.Busybox(ctx, "/bin/busybox", tree); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "layer.erofs")
	if out, err := exec.Command("mkfs.erofs", img, tree).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.erofs: %v: %s", err, out)
	}
	spec := host.DefaultSpec("", []string{"sh", "-c", "cat /etc/passwd | head -1; touch /x 2>/dev/null || echo read-only"}, false)
	spec.Root.Readonly = true
	c, err := m.u.CreateContainer(ctx, "vmerofs", spec, uvm.ContainerConfig{RootFS: uvm.RootFS{Layers: []string{img}}})
	if err != nil {
		t.Fatalf("mount the erofs layer: %v\nconsole:\n%s", err, m.console)
	}
	p, err := c.CreateProcess(ctx, &protocol.ProcessParameters{CreateStdOutPipe: true, CreateStdErrPipe: true})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	r := collect(t, p)
	c.Wait()
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if r.stdout != "root:x:0:0:root:/root:/bin/sh\nread-only\n" || r.code != 0 {
		t.Fatalf("container on erofs: %+v", r)
	}
}
