package vm

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/host/vm/qemu"
	"github.com/uvmgcs/gcs/protocol"
)

// TestVMMappedDirectory: a host directory shared over virtio-9p mounts in
// the guest, read-write and read-only as asked.
func TestVMMappedDirectory(t *testing.T) {
	if why := missing(); why != "" {
		t.Skip("SKIP (loud): " + why)
	}
	rw, ro := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(ro, "hello"), []byte("from the host\n"), 0o644)
	k, i := bootFiles()
	con := &console{}
	q := qemu.New(vm.Config{Kernel: k, Initrd: i, ConsoleLog: con}, qemu.Options{Shares: []qemu.Share{
		{Tag: "rw", Path: rw}, {Tag: "ro", Path: ro, ReadOnly: true},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u, err := uvm.Start(ctx, q, uvm.Options{Sharer: uvm.Tags{rw: "rw", ro: "ro"}})
	if err != nil {
		q.Shutdown(context.Background())
		t.Fatalf("boot: %v\nconsole:\n%s", err, con)
	}
	defer u.Shutdown(context.Background())
	gc := u.GuestConnection()
	rws, err := u.AddShare(ctx, rw, false)
	if err != nil {
		t.Fatalf("share %s: %v\n%s", rw, err, con)
	}
	ros, err := u.AddShare(ctx, ro, true)
	if err != nil {
		t.Fatalf("share %s: %v\n%s", ro, err, con)
	}
	r := run(t, gc, "sh", "-c", "cat "+ros.GuestPath()+"/hello; echo x > "+ros.GuestPath()+"/new 2>/dev/null || echo ro-refused; echo written > "+rws.GuestPath()+"/out")
	if r.stdout != "from the host\nro-refused\n" {
		t.Fatalf("guest: %+v", r)
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "written\n" {
		t.Fatalf("host sees %q", b)
	}
	for _, sh := range []*uvm.Resource{rws, ros} {
		if err := sh.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if r := run(t, gc, "sh", "-c", "grep -c "+uvm.ShareMountRoot+" /proc/mounts"); r.stdout != "0\n" {
		t.Fatalf("shares left mounted: %q", r.stdout)
	}

	// A container's bind mounts of host directories go through the same
	// shares, and its Delete releases them with its disks.
	layerImg, scratchImg := images(t)
	spec := host.DefaultSpec("", []string{"sh", "-c", "cat /in/hello; echo x > /in/y 2>/dev/null || echo ro; echo from-ctr > /out/z"}, false)
	c, err := u.CreateContainer(ctx, "vmmounts", spec, uvm.ContainerConfig{
		RootFS: uvm.RootFS{Layers: []string{layerImg}, Scratch: scratchImg},
		Mounts: []uvm.Mount{{Source: ro, Destination: "/in", ReadOnly: true}, {Source: rw, Destination: "/out"}},
	})
	if err != nil {
		t.Fatalf("create with mounts: %v\n%s", err, con)
	}
	p, err := c.CreateProcess(ctx, &protocol.ProcessParameters{CreateStdOutPipe: true, CreateStdErrPipe: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := collect(t, p); r.stdout != "from the host\nro\n" {
		t.Fatalf("container with mounts: %+v", r)
	}
	c.Wait()
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "z")); string(b) != "from-ctr\n" {
		t.Fatalf("the host sees %q from the container", b)
	}
	if res := u.Resources(); len(res) != 0 {
		t.Fatalf("left after delete: %+v", res)
	}
}
