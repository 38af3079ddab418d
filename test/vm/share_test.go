package vm

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

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
	u, err := uvm.Start(ctx, q, uvm.Options{})
	if err != nil {
		q.Shutdown(context.Background())
		t.Fatalf("boot: %v\nconsole:\n%s", err, con)
	}
	defer u.Shutdown(context.Background())
	gc := u.GuestConnection()
	rwd := protocol.MappedDirectory{ShareName: "rw", MountPath: "/run/mounts/share-rw"}
	rod := protocol.MappedDirectory{ShareName: "ro", MountPath: "/run/mounts/share-ro", ReadOnly: true}
	for _, d := range []protocol.MappedDirectory{rwd, rod} {
		if err := gc.AddMappedDirectory(ctx, d); err != nil {
			t.Fatalf("share %s: %v\n%s", d.ShareName, err, con)
		}
	}
	r := run(t, gc, "sh", "-c", "cat /run/mounts/share-ro/hello; echo x > /run/mounts/share-ro/new 2>/dev/null || echo ro-refused; echo written > /run/mounts/share-rw/out")
	if r.stdout != "from the host\nro-refused\n" {
		t.Fatalf("guest: %+v", r)
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "written\n" {
		t.Fatalf("host sees %q", b)
	}
	for _, d := range []protocol.MappedDirectory{rwd, rod} {
		if err := gc.RemoveMappedDirectory(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
}
