package vm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/layer"
	"github.com/uvmgcs/gcs/protocol"
)

// images builds the busybox layer and a scratch disk on the host.
func images(t *testing.T) (layerImg, scratchImg string) {
	t.Helper()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("SKIP (loud): /bin/busybox (busybox-static) is missing")
	}
	ctx := context.Background()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := layer.Busybox(ctx, "/bin/busybox", tree); err != nil {
		t.Fatal(err)
	}
	layerImg, scratchImg = filepath.Join(dir, "layer.img"), filepath.Join(dir, "scratch.img")
	if err := layer.FromDir(ctx, tree, layerImg); err != nil {
		t.Fatal(err)
	}
	if err := layer.Scratch(ctx, scratchImg, 64); err != nil {
		t.Fatal(err)
	}
	return layerImg, scratchImg
}

// TestVMContainer: a container on a hot-plugged layer and scratch disk,
// with output, exit codes, an exec, SIGTERM, and the layer hot-removed
// after the container is deleted.
func TestVMContainer(t *testing.T) {
	m := shared.get(t)
	gc := m.gc()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	layerImg, scratchImg := images(t)
	ld, err := m.m.AddSCSIDisk(ctx, layerImg, true)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := m.m.AddSCSIDisk(ctx, scratchImg, false)
	if err != nil {
		t.Fatal(err)
	}
	root := host.GuestBundleRoot + "/vmc1/rootfs"
	unmount, err := gc.MountLayerStack(ctx,
		[]protocol.MappedVirtualDisk{{Controller: ld.Controller, Lun: ld.LUN}},
		&protocol.MappedVirtualDisk{Controller: sd.Controller, Lun: sd.LUN}, root)
	if err != nil {
		t.Fatalf("mount layers: %v\nconsole:\n%s", err, m.console)
	}
	c, err := gc.CreateContainer(ctx, "vmc1", host.DefaultSpec(root, []string{"sleep", "1000"}, false))
	if err != nil {
		t.Fatal(err)
	}
	init, err := c.CreateProcess(ctx, &protocol.ProcessParameters{})
	if err != nil {
		t.Fatalf("start: %v\nconsole:\n%s", err, m.console)
	}

	exec := func(args ...string) result {
		p, err := c.Exec(ctx, &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}},
			&protocol.ProcessParameters{CreateStdOutPipe: true, CreateStdErrPipe: true})
		if err != nil {
			t.Fatalf("exec %v: %v", args, err)
		}
		return collect(t, p)
	}
	if r := exec("sh", "-c", "echo written > /data; cat /data; hostname; exit 7"); r.stdout != "written\nuvmgcs\n" || r.code != 7 {
		t.Fatalf("exec: %+v", r)
	}
	if r := exec("sh", "-c", "ps -o pid,comm | grep -c sleep"); strings.TrimSpace(r.stdout) != "1" {
		t.Fatalf("ps in the container: %+v", r)
	}
	if err := init.Signal(ctx, 9); err != nil {
		t.Fatal(err)
	}
	if r := collect(t, init); r.code != 137 {
		t.Fatalf("init exit %d", r.code)
	}
	c.Wait()
	if n := c.ExitNotification(); n.Type != protocol.NotificationUnexpectedExit {
		t.Fatalf("notification %+v", n)
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := unmount(ctx); err != nil {
		t.Fatalf("unmount layers: %v", err)
	}
	if err := gc.RemoveSCSIDevice(ctx, ld.Controller, ld.LUN); err != nil {
		t.Fatalf("guest lets go of the layer: %v", err)
	}
	if err := m.m.RemoveSCSIDisk(ctx, ld); err != nil {
		t.Fatalf("hot-remove the layer: %v", err)
	}
	if err := gc.RemoveSCSIDevice(ctx, sd.Controller, sd.LUN); err != nil {
		t.Fatal(err)
	}
	if err := m.m.RemoveSCSIDisk(ctx, sd); err != nil {
		t.Fatal(err)
	}
	// Nothing of the container is left mounted in the VM.
	if r := run(t, gc, "sh", "-c", "grep -c -e /run/layers -e /run/mounts -e /run/gcs/c /proc/mounts; ls /sys/bus/scsi/devices | grep -c ':0:0:'"); r.stdout != "0\n0\n" {
		t.Fatalf("left in the VM: %q", r.stdout)
	}
}

// TestVMBlankScratch: a blank disk asked for with EnsureFilesystem is
// formatted in the VM and mounted writable.
func TestVMBlankScratch(t *testing.T) {
	m := shared.get(t)
	gc := m.gc()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	d, err := m.m.AddSCSIDisk(ctx, img, false)
	if err != nil {
		t.Fatal(err)
	}
	disk := protocol.MappedVirtualDisk{Controller: d.Controller, Lun: d.LUN, MountPath: "/run/mounts/blank", EnsureFilesystem: true}
	if err := gc.AddSCSIDisk(ctx, disk); err != nil {
		t.Fatalf("format and mount: %v", err)
	}
	if r := run(t, gc, "sh", "-c", "echo ok > /run/mounts/blank/f && cat /run/mounts/blank/f"); r.stdout != "ok\n" {
		t.Fatalf("write to the formatted disk: %+v", r)
	}
	if err := gc.RemoveSCSIDisk(ctx, disk); err != nil {
		t.Fatal(err)
	}
	gc.RemoveSCSIDevice(ctx, d.Controller, d.LUN)
	if err := m.m.RemoveSCSIDisk(ctx, d); err != nil {
		t.Fatal(err)
	}
}
