//go:build linux

package qemu

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/internal/log"
)

// testLogCtx returns a context whose logger writes to the test log at
// debug level, so a failing test shows the console and QMP traffic.
func testLogCtx(t *testing.T, timeout time.Duration) context.Context {
	logger := logrus.New()
	logger.SetLevel(logrus.DebugLevel)
	logger.SetOutput(testWriter{t})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return log.WithLogger(ctx, logrus.NewEntry(logger))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startVM starts v and makes sure it is shut down and reaped when the test
// ends, however it ends.
func startVM(ctx context.Context, t *testing.T, v *VM) {
	t.Helper()
	t.Cleanup(func() {
		if err := v.Shutdown(context.Background()); err != nil {
			t.Errorf("cleanup Shutdown: %v", err)
		}
	})
	if err := v.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func requireQEMU(t *testing.T) {
	if _, err := exec.LookPath(Binary); err != nil {
		t.Skipf("SKIPPING: %s not found (apt-get install qemu-system-x86)", Binary)
	}
}

func TestStartMissingKernel(t *testing.T) {
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd.img")
	must(t, os.WriteFile(initrd, []byte("x"), 0o644))
	kernel := filepath.Join(dir, "no-such-vmlinuz")
	state := filepath.Join(dir, "state")

	v := New(vm.Config{Kernel: kernel, Initrd: initrd, StateDir: state}, Options{})
	err := v.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), kernel) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Start = %v, want a not-exist error naming %s", err, kernel)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir left behind: %v", err)
	}
	select {
	case <-v.Done():
	default:
		t.Error("Done not closed after a failed Start")
	}
	if err := v.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after failed Start: %v", err)
	}

	v = New(vm.Config{Kernel: initrd, Initrd: filepath.Join(dir, "no-such-initrd")}, Options{})
	if err := v.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "no-such-initrd") {
		t.Errorf("Start with missing initrd = %v", err)
	}
}

func TestShutdownBeforeStart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	v := New(vm.Config{Kernel: "/k", Initrd: "/i", StateDir: state}, Options{})
	for range 2 {
		if err := v.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	<-v.Done()
	if err := v.Wait(); err != nil {
		t.Errorf("Wait = %v", err)
	}
	if err := v.Start(context.Background()); !errors.Is(err, vm.ErrNotRunning) {
		t.Errorf("Start after Shutdown = %v", err)
	}
	if _, err := v.AddSCSIDisk(context.Background(), "/dev/null", true); !errors.Is(err, vm.ErrNotRunning) {
		t.Errorf("AddSCSIDisk before Start = %v", err)
	}
}

// A kernel QEMU cannot load makes it exit at once: Start must say why, with
// QEMU's own words, and leave nothing behind.
func TestStartQEMUExitsEarly(t *testing.T) {
	requireQEMU(t)
	dir := t.TempDir()
	kernel := filepath.Join(dir, "bogus-kernel")
	must(t, os.WriteFile(kernel, make([]byte, 4096), 0o644))
	state := filepath.Join(dir, "state")
	v := New(vm.Config{Kernel: kernel, Initrd: kernel, StateDir: state}, Options{Accel: AccelTCG})
	err := v.Start(testLogCtx(t, 30*time.Second))
	if err == nil {
		v.Shutdown(context.Background())
		t.Fatal("Start with a bogus kernel succeeded")
	}
	t.Logf("Start: %v", err)
	if !strings.Contains(err.Error(), "qemu exited") {
		t.Errorf("error does not say QEMU exited: %v", err)
	}
	assertGone(t, v, state)
}

func TestStartCancelledKillsQEMU(t *testing.T) {
	requireQEMU(t)
	dir := t.TempDir()
	kernel := filepath.Join(dir, "kernel")
	must(t, os.WriteFile(kernel, make([]byte, 4096), 0o644))
	state := filepath.Join(dir, "state")
	v := New(vm.Config{Kernel: kernel, Initrd: kernel, StateDir: state}, Options{Accel: AccelTCG})
	ctx, cancel := context.WithCancel(testLogCtx(t, 30*time.Second))
	cancel()
	if err := v.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled ctx = %v", err)
	}
	assertGone(t, v, state)
}

// assertGone checks that v's QEMU was reaped and its state removed.
func assertGone(t *testing.T, v *VM, state string) {
	t.Helper()
	select {
	case <-v.Done():
	default:
		t.Fatal("Done not closed")
	}
	if v.cmd != nil {
		pid := v.cmd.Process.Pid
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("qemu pid %d still exists: kill(0) = %v", pid, err)
		}
		if sock := v.paths.qmpSocket; sock != "" {
			if out, err := exec.Command("pgrep", "-f", sock).CombinedOutput(); err == nil {
				t.Errorf("a qemu with %s is still running: pid %s", sock, out)
			}
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir %s left behind: %v", state, err)
	}
}

// TestBoot boots the test guest and drives it through the whole lifecycle.
func TestBoot(t *testing.T) {
	g := buildTestGuest(t)
	ctx := testLogCtx(t, 90*time.Second)
	console := newConsoleWatcher()
	state := filepath.Join(t.TempDir(), "state")
	v := New(vm.Config{Kernel: g.kernel, Initrd: g.initrd, StateDir: state, ConsoleLog: console}, Options{})
	began := time.Now()
	startVM(ctx, t, v)
	t.Logf("Start returned after %v", time.Since(began))

	// The agent channel is connected before the guest boots; the guest's
	// greeting arrives once its init has found the port.
	v.mu.Lock()
	agent := v.agent // the raw channel: this guest speaks no yamux
	v.mu.Unlock()
	if agent == nil {
		t.Fatal("no agent channel after Start")
	}
	console.waitFor(ctx, t, "the guest marker", func(w *consoleWatcher) bool {
		return strings.Contains(w.String(), guestMarker)
	})
	t.Logf("guest marker after %v", time.Since(began))
	agent.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, len("hello-from-guest\n"))
	if _, err := io.ReadFull(agent, buf); err != nil || string(buf) != "hello-from-guest\n" {
		t.Fatalf("agent channel read %q, %v; console:\n%s", buf, err, console)
	}
	console.waitFor(ctx, t, "the device list", func(w *consoleWatcher) bool { return w.lastLine("devices:") != "" })

	// Two disks: LUNs 0 and 1, seen by the guest.
	dir := t.TempDir()
	disk0 := sparseFile(t, filepath.Join(dir, "d0.img"), 8<<20)
	disk1 := sparseFile(t, filepath.Join(dir, "d1.img"), 8<<20)
	d0, err := v.AddSCSIDisk(ctx, disk0, false)
	must(t, err)
	d1, err := v.AddSCSIDisk(ctx, disk1, true)
	must(t, err)
	if d0 != (vm.Disk{Controller: 0, LUN: 0}) || d1 != (vm.Disk{Controller: 0, LUN: 1}) {
		t.Fatalf("disks at %+v and %+v", d0, d1)
	}
	console.waitFor(ctx, t, "both LUNs", func(w *consoleWatcher) bool {
		l := w.lastLine("devices:")
		return strings.Contains(l, "0:0:0:0") && strings.Contains(l, "0:0:0:1")
	})
	nodes := blockNodes(ctx, t, v)
	if ro, ok := nodes[disk1]; !ok || !ro {
		t.Errorf("query-named-block-nodes: %s read-only=%v present=%v", disk1, ro, ok)
	}

	// Remove LUN 0: QEMU lets go of the file, the guest loses the disk,
	// and the LUN is free for the next add.
	must(t, v.RemoveSCSIDisk(ctx, d0))
	if _, ok := blockNodes(ctx, t, v)[disk0]; ok {
		t.Errorf("%s still has a block node after RemoveSCSIDisk", disk0)
	}
	console.waitFor(ctx, t, "LUN 0 gone", func(w *consoleWatcher) bool {
		l := w.lastLine("devices:")
		return !strings.Contains(l, "0:0:0:0") && strings.Contains(l, "0:0:0:1")
	})
	must(t, v.RemoveSCSIDisk(ctx, d0)) // not attached: success
	again, err := v.AddSCSIDisk(ctx, disk0, false)
	must(t, err)
	if again.LUN != 0 {
		t.Errorf("re-added disk at LUN %d, want the freed LUN 0", again.LUN)
	}

	// A pmem device.
	layer := sparseFile(t, filepath.Join(dir, "layer.img"), 64<<20)
	n, err := v.AddPMem(ctx, layer)
	must(t, err)
	if n != 0 {
		t.Errorf("first pmem device number %d", n)
	}
	console.waitFor(ctx, t, "pmem0", func(w *consoleWatcher) bool {
		return strings.Contains(w.lastLine("devices:"), "pmem0")
	})

	// Shutdown: QEMU reaped, state gone, idempotent.
	pid := v.cmd.Process.Pid
	must(t, v.Shutdown(ctx))
	must(t, v.Shutdown(ctx))
	if err := v.Wait(); err != nil {
		t.Errorf("Wait after a clean quit = %v", err)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !os.IsNotExist(err) {
		t.Errorf("qemu pid %d still exists", pid)
	}
	assertGone(t, v, state)
	if _, err := v.AddSCSIDisk(ctx, disk0, false); !errors.Is(err, vm.ErrNotRunning) {
		t.Errorf("AddSCSIDisk after Shutdown = %v", err)
	}
	t.Logf("whole lifecycle took %v", time.Since(began))
}

func sparseFile(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	must(t, err)
	must(t, f.Truncate(size))
	must(t, f.Close())
	return path
}

// blockNodes maps each file QEMU has open as a block node to whether it is
// read-only.
func blockNodes(ctx context.Context, t *testing.T, v *VM) map[string]bool {
	t.Helper()
	var nodes []struct {
		File string `json:"file"`
		RO   bool   `json:"ro"`
	}
	must(t, v.qmp.Execute(ctx, "query-named-block-nodes", map[string]bool{"flat": true}, &nodes))
	m := map[string]bool{}
	for _, n := range nodes {
		m[n.File] = m[n.File] || n.RO
	}
	return m
}

// A Shutdown whose ctx has already ended kills QEMU instead of asking it,
// and still reaps it and removes everything, sockets in a separate short
// directory included.
func TestShutdownKillsWhenContextEnded(t *testing.T) {
	g := buildTestGuest(t)
	ctx := testLogCtx(t, 60*time.Second)
	state := filepath.Join(t.TempDir(), strings.Repeat("long-state-dir-", 8))
	v := New(vm.Config{Kernel: g.kernel, Initrd: g.initrd, StateDir: state}, Options{})
	startVM(ctx, t, v)
	if v.paths.socketDir == state {
		t.Fatalf("sockets in %s, a path too long for them", state)
	}

	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := v.Shutdown(ended); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := v.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Wait = %v, want killed", err)
	}
	assertGone(t, v, state)
	if _, err := os.Stat(v.paths.socketDir); !os.IsNotExist(err) {
		t.Errorf("socket dir %s left behind: %v", v.paths.socketDir, err)
	}
}
