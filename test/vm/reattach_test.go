package vm

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/layer"
	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/host/uvm/named"
	"github.com/uvmgcs/gcs/host/vm/qemu"
	"github.com/uvmgcs/gcs/protocol"
)

// TestReattachAfterRestart: one host process (host-bridge) starts
// containers from a bundle in a long-lived VM and exits; another (this
// test) attaches to the VM, finds the containers and what they hold, waits
// for one to exit, deletes them, and nothing is left attached or mounted.
func TestReattachAfterRestart(t *testing.T) {
	name, data, hbRun := startNamedVM(t, "reattach")
	// A bundle whose root is a directory on this host.
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := layer.Busybox(ctx, "/bin/busybox", rootfs); err != nil {
		t.Fatal(err)
	}
	spec := host.DefaultSpec("rootfs", []string{"sh", "-c", "while [ ! -e /go ]; do sleep 0.1; done; exit 3"}, false)
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ra", "rb"} {
		if out, err := hbRun("run", "--uvm", name, "--bundle", bundle, "-d", id); err != nil {
			t.Fatalf("run -d %s: %v\n%s", id, err, out)
		}
	}
	// One cached layer for the two containers.
	if l, _ := filepath.Glob(filepath.Join(data, "layers", "*.img")); len(l) != 1 {
		t.Fatalf("layer cache: %q", l)
	}

	u, err := named.Store{}.Attach(ctx, name, uvm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Detach()
	res := u.Resources()
	var layers, scratches, overlays int
	for _, r := range res {
		switch {
		case strings.HasPrefix(r.Key, "scsi:"+filepath.Join(data, "layers")):
			layers++
			if r.Refs != 2 {
				t.Errorf("the shared layer has %d holders", r.Refs)
			}
		case strings.HasPrefix(r.Key, "scsi:"+filepath.Join(data, "scratch")):
			scratches++
		case strings.HasPrefix(r.Key, "overlay:"):
			overlays++
		}
	}
	if layers != 1 || scratches != 2 || overlays != 2 {
		t.Fatalf("the table another process left: %+v", res)
	}
	for _, id := range []string{"ra", "rb"} {
		c, err := u.OpenContainer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		again, err := u.OpenContainer(ctx, id) // safe to open twice
		if err != nil || again.Container != c.Container {
			t.Fatalf("second open: %v", err)
		}
		pid, err := c.InitPid(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The init was started by the other process: let "ra" end on
		// its own (it waits for /go), kill "rb"; wait for both here.
		want := 137
		if id == "ra" {
			want = 3
			p, err := c.Exec(ctx, &specs.Process{Args: []string{"touch", "/go"}, Cwd: "/", Env: []string{"PATH=/bin"}}, &protocol.ProcessParameters{})
			if err != nil {
				t.Fatal(err)
			}
			p.Wait()
			p.Close()
		} else if err := c.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(); err != nil {
			t.Fatal(err)
		}
		if code, err := c.ExitCode(); err != nil || code != want {
			t.Fatalf("%s (pid %d) exited %d, %v; want %d", id, pid, code, err, want)
		}
		if err := c.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if res := u.Resources(); len(res) != 0 {
		t.Fatalf("left in the table: %+v", res)
	}
	files, err := u.Machine().(*qemu.VM).BlockFiles(ctx)
	if err != nil || len(files) != 0 {
		t.Fatalf("QEMU's block devices: %q, %v", files, err)
	}
	if l, _ := filepath.Glob(filepath.Join(data, "scratch", "*")); len(l) != 0 {
		t.Fatalf("scratch files left: %q", l)
	}
	r := run(t, u.GuestConnection(), "sh", "-c", "grep -c -e /run/layers -e /run/mounts -e /run/gcs/c /proc/mounts; ls /sys/bus/scsi/devices | grep -c ':0:0:'")
	if r.stdout != "0\n0\n" {
		t.Fatalf("left in the VM: %q", r.stdout)
	}
}
