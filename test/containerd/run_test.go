package containerd

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/console"

	"github.com/uvmgcs/gcs/host/layer"
)

// TestRunHello is the first thing a user does: ctr run --rm an image
// through the runtime and read what the container printed.
func TestRunHello(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		out, err := d.ctrOK(context.Background(), d.runArgs("--rm", busyboxImage, "hello-"+d.id(), "echo", "hello")...)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(out) != "hello" {
			t.Fatalf("output %q, want hello", out)
		}
	})
}

// TestRunExitCodeAndStreams: stdout and stderr reach ctr's, stdin reaches
// the container, and ctr exits with the container's exit code.
func TestRunExitCodeAndStreams(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		out, errs, code := d.ctrIn(context.Background(), []byte("from stdin\n"),
			d.runArgs("--rm", busyboxImage, "exit-"+d.id(), "sh", "-c", "read l; echo \"out $l\"; echo err >&2; exit 3")...)
		if code != 3 {
			t.Fatalf("ctr exit code %d, want 3 (stdout %q, stderr %q)", code, out, errs)
		}
		if strings.TrimSpace(out) != "out from stdin" || !strings.Contains(errs, "err") {
			t.Fatalf("stdout %q (want \"out from stdin\"), stderr %q (want err)", out, errs)
		}
	})
}

// TestLayeredImage runs a three-layer image: files from every layer, a
// file a later layer deleted (whiteout) and a directory it replaced
// (opaque) look as they do with runc. Each layer is converted once: a
// second run adds no layer disk.
func TestLayeredImage(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		script := "cat /etc/layer2 /etc/layer3; ls /opq; test -e /etc/gone && echo gone-is-there; test -e /opq/hidden && echo hidden-is-there; echo written > /etc/new; cat /etc/new"
		want := "from layer 2\nfrom layer 3\nkept\nwritten\n"
		out, err := d.ctrOK(context.Background(), d.runArgs("--rm", layeredImage, "layers-"+d.id(), "sh", "-c", script)...)
		if err != nil {
			t.Fatal(err)
		}
		if out != want {
			t.Fatalf("output %q, want %q", out, want)
		}
		before, _ := filepath.Glob(filepath.Join(d.layers, "*.erofs"))
		if _, err := d.ctrOK(context.Background(), d.runArgs("--rm", layeredImage, "layers-"+d.id(), "true")...); err != nil {
			t.Fatal(err)
		}
		after, _ := filepath.Glob(filepath.Join(d.layers, "*.erofs"))
		if len(before) < 3 || len(after) != len(before) {
			t.Fatalf("layer disks cached: %d after the first run (want at least 3), %d after the second (want the same)", len(before), len(after))
		}
	})
}

// TestRunTerminal: ctr run -t gives the container a terminal whose output
// reaches ctr's.
func TestRunTerminal(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		pty, slave, err := console.NewPty()
		if err != nil {
			t.Fatal(err)
		}
		defer pty.Close()
		s, err := os.OpenFile(slave, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{"--address", d.sock, "--namespace", namespace}, d.runArgs("--rm", "-t", busyboxImage, "tty-"+d.id(), "sh", "-c", "test -t 0 && test -t 1 && echo on-a-tty; stty size")...)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, d.v.ctr, args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		s.Close()
		var out bytes.Buffer
		copied := make(chan struct{})
		go func() { io.Copy(&out, pty); close(copied) }()
		err = cmd.Wait()
		pty.Close()
		<-copied
		if err != nil {
			t.Fatalf("ctr run -t: %v: %q", err, out.String())
		}
		if !strings.Contains(out.String(), "on-a-tty") {
			t.Fatalf("output %q: the container had no terminal", out.String())
		}
	})
}

// TestRefusedClearly: what a VM cannot do (join a host namespace) fails
// with a message that says so, and leaves nothing behind.
func TestRefusedClearly(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		id := "ns-" + d.id()
		out, errs, code := d.ctr(context.Background(), d.runArgs("--rm", "--with-ns", "network:/proc/1/ns/net", busyboxImage, id, "true")...)
		if code == 0 || !strings.Contains(out+errs, "impossible in a VM") {
			t.Fatalf("--with-ns: exit %d, %q %q; want a failure saying it is impossible", code, out, errs)
		}
		d.remove(id)
	})
}

// TestBindMounts: host directories and files bind-mounted into the
// container through Plan9 shares, read-write (the host sees what the
// container wrote) and read-only (writes fail).
func TestBindMounts(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		rw, ro := t.TempDir(), t.TempDir()
		if err := os.WriteFile(filepath.Join(ro, "in"), []byte("from the host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "single")
		if err := os.WriteFile(file, []byte("one file\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := d.ctrOK(context.Background(), d.runArgs("--rm",
			"--mount", "type=bind,src="+rw+",dst=/rw,options=rbind:rw",
			"--mount", "type=bind,src="+ro+",dst=/ro,options=rbind:ro",
			"--mount", "type=bind,src="+file+",dst=/etc/single,options=rbind:ro",
			busyboxImage, "bind-"+d.id(), "sh", "-c",
			"cat /ro/in /etc/single; echo written > /rw/out; echo x > /ro/no 2>/dev/null && echo ro-is-writable; true")...)
		if err != nil {
			t.Fatal(err)
		}
		if out != "from the host\none file\n" {
			t.Fatalf("output %q", out)
		}
		if b, err := os.ReadFile(filepath.Join(rw, "out")); err != nil || string(b) != "written\n" {
			t.Fatalf("the host sees %q %v in the read-write mount", b, err)
		}
		if _, err := os.Stat(filepath.Join(ro, "no")); err == nil {
			t.Fatal("the container wrote into the read-only mount")
		}
	})
}

// TestRootfsDirectory: ctr run --rootfs runs a host directory (no
// snapshot) as the container's root, shared over Plan9.
func TestRootfsDirectory(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		root := filepath.Join(t.TempDir(), "root")
		if err := layer.Busybox(context.Background(), "/bin/busybox", root); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "marker"), []byte("host tree\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := d.ctrOK(context.Background(), d.runArgs("--rm", "--rootfs", root, "rootfs-"+d.id(), "sh", "-c", "cat /marker; echo made > /made")...)
		if err != nil {
			t.Fatal(err)
		}
		if out != "host tree\n" {
			t.Fatalf("output %q", out)
		}
		if b, err := os.ReadFile(filepath.Join(root, "made")); err != nil || string(b) != "made\n" {
			t.Fatalf("the host tree holds %q %v after the container wrote /made", b, err)
		}
	})
}

// TestBinaryLogger: --log-uri binary:// runs the logger with the
// container's stdout on fd 3 and stderr on fd 4, as runc's shim does.
func TestBinaryLogger(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		dir := t.TempDir()
		logger := filepath.Join(dir, "logger.sh")
		script := "#!/bin/sh\nexec 5>&-\ncat <&4 > \"$2.err\" &\ncat <&3 > \"$2\"\nwait\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID\" > \"$2.env\"\n"
		if err := os.WriteFile(logger, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out")
		id := "logger-" + d.id()
		if _, err := d.ctrOK(context.Background(), d.runArgs("--rm", "--log-uri", "binary://"+logger+"?file="+out, busyboxImage, id, "sh", "-c", "echo to-stdout; echo to-stderr >&2")...); err != nil {
			t.Fatal(err)
		}
		for f, want := range map[string]string{out: "to-stdout\n", out + ".err": "to-stderr\n", out + ".env": namespace + "/" + id + "\n"} {
			b, err := os.ReadFile(f)
			if err != nil || string(b) != want {
				t.Errorf("%s: %q %v, want %q", filepath.Base(f), b, err, want)
			}
		}
	})
}

// TestVMDies: when the VM's process dies under a running task, the task
// exits (137), its exit reaches the attached ctr, and delete cleans up.
func TestVMDies(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		id := "vmdies-" + d.id()
		type result struct {
			code int
			errs string
		}
		attached := make(chan result, 1)
		go func() {
			_, errs, code := d.ctr(context.Background(), d.runArgs("--rm", busyboxImage, id, "sleep", "100000")...)
			attached <- result{code, errs}
		}()
		t.Cleanup(func() { d.remove(id) })
		d.waitStatus(t, id, "RUNNING")
		_, pid := d.taskStatus(t, id)
		qemu, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil || !strings.Contains(string(qemu), d.dir+"/") {
			t.Fatalf("task pid %s is not this run's VM: %q %v", pid, qemu, err)
		}
		if err := exec.Command("kill", "-9", pid).Run(); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-attached:
			if r.code != 137 {
				t.Fatalf("attached ctr: exit %d (%s), want 137", r.code, r.errs)
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("the attached ctr did not return after the VM died")
		}
	})
}

// TestErofsSnapshotter (containerd 2.x): the erofs snapshotter's layers
// are attached as they are (nothing converted, nothing mounted on the
// host) and its block-mode writable image is the container's scratch disk.
func TestErofsSnapshotter(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		if !d.v.erofs {
			t.Skipf("containerd %s has no erofs snapshotter (2.x has)", d.v.name)
		}
		ctx := context.Background()
		if _, err := d.ctrOK(ctx, "images", "import", "--local", "--snapshotter", "erofs", suite.layered); err != nil {
			t.Fatal(err)
		}
		before, _ := filepath.Glob(filepath.Join(d.layers, "*.erofs"))
		out, err := d.ctrOK(ctx, d.runArgs("--rm", "--snapshotter", "erofs", layeredImage, "erofs-"+d.id(), "sh", "-c",
			"cat /etc/layer2 /etc/layer3; ls /opq; test -e /etc/gone && echo gone-is-there; echo written > /w; cat /w")...)
		if err != nil {
			t.Fatal(err)
		}
		if want := "from layer 2\nfrom layer 3\nkept\nwritten\n"; out != want {
			t.Fatalf("output %q, want %q", out, want)
		}
		after, _ := filepath.Glob(filepath.Join(d.layers, "*.erofs"))
		if len(after) != len(before) {
			t.Fatalf("erofs snapshotter layers were converted again: %d cached disks, then %d", len(before), len(after))
		}
	})
}
