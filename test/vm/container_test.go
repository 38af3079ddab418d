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
	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/protocol"
)

// images builds the busybox layer and a scratch disk on the host.
func images(t testing.TB) (layerImg, scratchImg string) {
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

// TestVMContainer: a container on a hot-plugged layer and scratch disk
// added through the VM's owner, with output, exit codes, an exec, SIGKILL,
// and both disks unmounted and hot-removed when the container is deleted.
func TestVMContainer(t *testing.T) {
	m := shared.get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	layerImg, scratchImg := images(t)
	c, err := m.u.CreateContainer(ctx, "vmc1", host.DefaultSpec("", []string{"sleep", "1000"}, false),
		uvm.ContainerConfig{RootFS: uvm.RootFS{Layers: []string{layerImg}, Scratch: scratchImg}})
	if err != nil {
		t.Fatalf("create: %v\nconsole:\n%s", err, m.console)
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
	if err := c.Signal(ctx, host.SIGKILL); err != nil {
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
	assertNothingAttached(t, m)
}

// assertNothingAttached checks from both sides that the VM holds no disk
// and no container mount: the guest's /proc/mounts and SCSI devices, and
// QEMU's query-block.
func assertNothingAttached(t *testing.T, m *machine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r := run(t, m.gc(), "sh", "-c", "grep -c -e /run/layers -e /run/mounts -e /run/gcs/c /proc/mounts; ls /sys/bus/scsi/devices | grep -c ':0:0:'"); r.stdout != "0\n0\n" {
		t.Fatalf("left in the VM: %q", r.stdout)
	}
	files, err := m.m.BlockFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 0 {
		t.Fatalf("QEMU still has block devices: %q", files)
	}
	if res := m.u.Resources(); len(res) != 0 {
		t.Fatalf("the owner still lists %+v", res)
	}
}

// TestVMSharedLayers: three containers from two images run at once; the
// two that share an image share one attached layer disk and one guest
// mount, and after deleting them nothing is attached or mounted.
func TestVMSharedLayers(t *testing.T) {
	m := shared.get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	busyboxImg, _ := images(t)
	// A second image: busybox plus a marker file.
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := layer.Busybox(ctx, "/bin/busybox", tree); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "image"), []byte("second\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	secondImg := filepath.Join(dir, "second.img")
	if err := layer.FromDir(ctx, tree, secondImg); err != nil {
		t.Fatal(err)
	}
	type ctr struct {
		id, img string
		c       *uvm.Container
		init    *host.Process
	}
	ctrs := []*ctr{{id: "share1", img: busyboxImg}, {id: "share2", img: busyboxImg}, {id: "share3", img: secondImg}}
	for _, x := range ctrs {
		scratch := filepath.Join(dir, x.id+".img")
		if err := layer.Scratch(ctx, scratch, 64); err != nil {
			t.Fatal(err)
		}
		spec := host.DefaultSpec("", []string{"sh", "-c", "echo $0 > /mine; cat /image 2>/dev/null || echo first; read x || true", x.id}, false)
		c, err := m.u.CreateContainer(ctx, x.id, spec, uvm.ContainerConfig{RootFS: uvm.RootFS{Layers: []string{x.img}, Scratch: scratch, RemoveScratch: true}})
		if err != nil {
			t.Fatalf("create %s: %v\nconsole:\n%s", x.id, err, m.console)
		}
		x.c = c
		t.Cleanup(func() { // after a failure: leave the shared VM clean
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c.Kill(ctx)
			c.Delete(ctx)
		})
		if x.init, err = c.CreateProcess(ctx, &protocol.ProcessParameters{CreateStdInPipe: true, CreateStdOutPipe: true}); err != nil {
			t.Fatal(err)
		}
	}
	// All three run; the shared image is one attachment with two holders.
	byPath := map[string]uvm.ResourceInfo{}
	for _, r := range m.u.Resources() {
		byPath[r.Key] = r
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return "scsi:" + a }
	if r := byPath[abs(busyboxImg)]; r.Refs != 2 {
		t.Fatalf("the shared layer: %+v (all: %+v)", r, m.u.Resources())
	}
	if r := byPath[abs(secondImg)]; r.Refs != 1 {
		t.Fatalf("the second image's layer: %+v", r)
	}
	files, err := m.m.BlockFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 5 { // two layers, three scratch disks
		t.Fatalf("QEMU has %d block devices, want 5: %q", len(files), files)
	}
	if r := run(t, m.gc(), "sh", "-c", "grep -c ' /run/layers/' /proc/mounts"); r.stdout != "2\n" {
		t.Fatalf("layer mounts in the guest: %q", r.stdout)
	}
	for _, x := range ctrs {
		x.init.Stdin().Close()
		r := collect(t, x.init)
		want := "first\n"
		if x.img == secondImg {
			want = "second\n"
		}
		if r.stdout != want || r.code != 0 {
			t.Fatalf("%s: %+v", x.id, r)
		}
	}
	for i, x := range ctrs {
		x.c.Wait()
		if err := x.c.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if i == 0 { // one holder of the shared layer is left: it stays
			if r := byKey(m.u.Resources(), abs(busyboxImg)); r.Refs != 1 {
				t.Fatalf("after the first delete the shared layer is %+v", r)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, x.id+".img")); !os.IsNotExist(err) {
			t.Fatalf("%s's scratch file is left: %v", x.id, err)
		}
	}
	assertNothingAttached(t, m)
}

func byKey(rs []uvm.ResourceInfo, key string) uvm.ResourceInfo {
	for _, r := range rs {
		if r.Key == key {
			return r
		}
	}
	return uvm.ResourceInfo{}
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
	d, err := m.u.AddSCSI(ctx, img, uvm.SCSIOptions{MountPath: "/run/mounts/blank", EnsureFilesystem: true})
	if err != nil {
		t.Fatalf("format and mount: %v", err)
	}
	if r := run(t, gc, "sh", "-c", "echo ok > /run/mounts/blank/f && cat /run/mounts/blank/f"); r.stdout != "ok\n" {
		t.Fatalf("write to the formatted disk: %+v", r)
	}
	if err := d.Release(ctx); err != nil {
		t.Fatal(err)
	}
	assertNothingAttached(t, m)
}

// TestVMContainerVolumes: host directories bound into a container through
// the owner's default sharer (9p servers on agent-channel ports),
// read-only and read-write, released with the container.
func TestVMContainerVolumes(t *testing.T) {
	m := shared.get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	layerImg, scratchImg := images(t)
	ro, rw := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(ro, "hello"), []byte("from the host\n"), 0o644)
	spec := host.DefaultSpec("", []string{"sh", "-c", "cat /in/hello; echo x > /in/y 2>/dev/null || echo ro; echo from-ctr > /out/z"}, false)
	c, err := m.u.CreateContainer(ctx, "vmvolumes", spec, uvm.ContainerConfig{
		RootFS: uvm.RootFS{Layers: []string{layerImg}, Scratch: scratchImg},
		Mounts: []uvm.Mount{{Source: ro, Destination: "/in", ReadOnly: true}, {Source: rw, Destination: "/out"}},
	})
	if err != nil {
		t.Fatalf("create with volumes: %v\nconsole:\n%s", err, m.console)
	}
	p, err := c.CreateProcess(ctx, &protocol.ProcessParameters{CreateStdOutPipe: true, CreateStdErrPipe: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := collect(t, p); r.stdout != "from the host\nro\n" {
		t.Fatalf("container with volumes: %+v", r)
	}
	c.Wait()
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "z")); string(b) != "from-ctr\n" {
		t.Fatalf("the host sees %q from the container", b)
	}
	if r := run(t, m.gc(), "sh", "-c", "grep -c "+uvm.ShareMountRoot+" /proc/mounts"); r.stdout != "0\n" {
		t.Fatalf("shares left mounted: %q", r.stdout)
	}
	assertNothingAttached(t, m)
}
