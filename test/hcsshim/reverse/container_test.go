package reverse

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/layer"
	"github.com/uvmgcs/gcs/protocol"
)

// busyboxLayer is a busybox tree on this host, which the guest (sharing the
// host's /tmp) combines with a scratch directory as a container's root.
func busyboxLayer(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layer")
	if err := layer.Busybox(context.Background(), "/bin/busybox", dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ctr is a container in hcsshim's guest, created the way an hcsshim LCOW
// host does: CombinedLayers at /run/gcs/c/<id>/rootfs, then Create with a
// network namespace id of its own.
type ctr struct {
	*host.Container
	gc    *host.GuestConnection
	layer protocol.CombinedLayers
}

func createContainer(t testing.TB, gc *host.GuestConnection, lower string, args ...string) *ctr {
	t.Helper()
	ctx := timeout(t)
	id := "rev-" + uuid.NewString()[:8]
	root := host.GuestBundleRoot + "/" + id + "/rootfs"
	cl := protocol.CombinedLayers{
		ContainerID:       id,
		ContainerRootPath: root,
		Layers:            []protocol.Layer{{Path: lower}},
		// Nested in the bundle, as when an hcsshim host mounts the scratch
		// disk there: hcsshim's guest then keeps the bundle where it is.
		// (A scratch elsewhere makes it bind the bundle onto the scratch,
		// undone only for a Create that named ScratchDirPath, which
		// host.CreateContainer does not send.)
		ScratchPath: host.GuestBundleRoot + "/" + id + "/scratch",
	}
	if err := gc.CombineLayers(ctx, cl); err != nil {
		t.Fatalf("CombinedLayers: %v", err)
	}
	spec := host.DefaultSpec(root, args, false)
	spec.Hostname = "rev"
	// hcsshim's guest binds one container's pid to each namespace id.
	spec.Windows = &specs.Windows{Network: &specs.WindowsNetwork{NetworkNamespace: uuid.NewString()}}
	c, err := gc.CreateContainer(ctx, id, spec)
	if err != nil {
		gc.RemoveCombinedLayers(ctx, cl)
		t.Fatalf("create: %v", err)
	}
	cc := &ctr{Container: c, gc: gc, layer: cl}
	t.Cleanup(func() { cc.remove(t) })
	return cc
}

// remove stops the container and removes its root and its state.
func (c *ctr) remove(t testing.TB) {
	if c.gc.Err() != nil {
		return // handed to another connection; the guest's teardown reclaims it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Terminate(ctx); err == nil {
		select {
		case <-c.WaitChannel():
		case <-ctx.Done():
		}
	}
	// hcsshim's order: the overlay goes first, then the container's state
	// (its bundle, which holds the root's mount point).
	if err := c.gc.RemoveCombinedLayers(ctx, c.layer); err != nil {
		t.Errorf("remove the root of %s: %v", c.ID(), err)
	}
	if err := c.Delete(ctx); err != nil {
		t.Errorf("delete %s: %v", c.ID(), err)
	}
}

// start starts the init with stdout and stderr, and stdin when in.
func (c *ctr) start(t testing.TB, in bool) *host.Process {
	t.Helper()
	p, err := c.CreateProcess(timeout(t), &protocol.ProcessParameters{CreateStdInPipe: in, CreateStdOutPipe: true, CreateStdErrPipe: true})
	if err != nil {
		t.Fatalf("start %s: %v", c.ID(), err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// exec runs args in the container.
func (c *ctr) exec(t testing.TB, tty, in bool, args ...string) *host.Process {
	t.Helper()
	proc := &specs.Process{Args: args, Cwd: "/", Terminal: tty, Env: []string{"PATH=/bin"}}
	p, err := c.Exec(timeout(t), proc, &protocol.ProcessParameters{CreateStdInPipe: in || tty, CreateStdOutPipe: true, CreateStdErrPipe: !tty})
	if err != nil {
		t.Fatalf("exec %v: %v", args, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// waitExit waits for the container's exit and checks that exactly one exit
// notification came.
func (c *ctr) waitExit(t testing.TB) {
	t.Helper()
	select {
	case <-c.WaitChannel():
	case <-time.After(time.Minute):
		t.Fatalf("container %s: no exit", c.ID())
	}
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.ExitNotification(); n.Type != protocol.NotificationUnexpectedExit && n.Type != protocol.NotificationGracefulExit && n.Type != protocol.NotificationForcedExit {
		t.Errorf("exit notification %+v", n)
	}
	select {
	case n := <-c.gc.Notifications(c.ID()):
		t.Errorf("a second notification: %+v", n)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestContainerLifecycle(t *testing.T) {
	gc := startGuest(t).connect(t)
	c := createContainer(t, gc, busyboxLayer(t), "sh", "-c", "read x; echo got $x; exit 7")
	init := c.start(t, true)

	// exec, with stdin closed by a half-close
	e := c.exec(t, false, true, "sh", "-c", "cat; hostname; exit 2")
	io.WriteString(e.Stdin(), "in\n")
	e.CloseStdin()
	if r := collect(t, e); r != (result{"in\nrev\n", "", 2}) {
		t.Fatalf("exec: %+v", r)
	}

	props, m, err := c.Properties(timeout(t), protocol.PropertyTypeProcessList, protocol.PropertyTypeStatistics)
	if err != nil {
		t.Fatalf("properties: %v", err)
	}
	if len(props.ProcessList) == 0 || !hasPid(props.ProcessList, init.Pid()) {
		t.Errorf("process list %+v lacks the init %d", props.ProcessList, init.Pid())
	}
	if m == nil || m.Memory == nil || m.Memory.Usage.Usage == 0 || m.Pids == nil || m.Pids.Current == 0 {
		t.Errorf("statistics %+v", m)
	}

	limit := int64(96 << 20)
	if err := c.Update(timeout(t), &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatalf("update: %v", err)
	}
	if _, m, err := c.Properties(timeout(t), protocol.PropertyTypeStatistics); err != nil || m.Memory.Usage.Limit != uint64(limit) {
		t.Errorf("after update: limit %+v, %v", m, err)
	}

	// uvmgcs's extensions: hcsshim's guest announces no pause and sends no
	// state; the library says so instead of guessing.
	if err := c.Pause(timeout(t)); !errors.Is(err, protocol.HrNotImpl) {
		t.Errorf("pause: %v, want E_NOTIMPL", err)
	}
	if _, err := c.State(timeout(t)); !errors.Is(err, protocol.HrNotImpl) {
		t.Errorf("state: %v, want E_NOTIMPL", err)
	}

	io.WriteString(init.Stdin(), "x\n")
	if r := collect(t, init); r != (result{"got x\n", "", 7}) {
		t.Fatalf("init: %+v", r)
	}
	c.waitExit(t)
	if code, err := c.ExitCode(); code != 7 || err != nil {
		t.Fatalf("container exit code %d, %v; want 7", code, err)
	}
}

func hasPid(l []protocol.ProcessDetails, pid int) bool {
	for _, p := range l {
		if int(p.ProcessID) == pid {
			return true
		}
	}
	return false
}

func TestContainerShutdown(t *testing.T) {
	gc := startGuest(t).connect(t)
	lower := busyboxLayer(t)
	for _, tc := range []struct {
		name   string
		forced bool
		code   int
	}{{"graceful", false, 3}, {"forced", true, 137}} {
		t.Run(tc.name, func(t *testing.T) {
			c := createContainer(t, gc, lower, "sh", "-c", `trap "exit 3" TERM; echo up; while :; do sleep 0.05; done`)
			init := c.start(t, false)
			line := make([]byte, 3)
			if _, err := io.ReadFull(init.Stdout(), line); err != nil || string(line) != "up\n" {
				t.Fatalf("init said %q, %v", line, err)
			}
			stop := c.Shutdown
			if tc.forced {
				stop = c.Terminate
			}
			if err := stop(timeout(t)); err != nil {
				t.Fatal(err)
			}
			if r := collect(t, init); r.code != tc.code {
				t.Errorf("init %+v, want code %d", r, tc.code)
			}
			c.waitExit(t)
			if code, err := c.ExitCode(); code != tc.code || err != nil {
				t.Errorf("container exit code %d, %v; want %d", code, err, tc.code)
			}
		})
	}
}

func TestContainerSignalsAndTerminal(t *testing.T) {
	gc := startGuest(t).connect(t)
	c := createContainer(t, gc, busyboxLayer(t), "sleep", "1000")
	c.start(t, false)

	e := c.exec(t, false, false, "sh", "-c", `trap "exit 4" USR1; echo up; while :; do sleep 0.05; done`)
	line := make([]byte, 3)
	if _, err := io.ReadFull(e.Stdout(), line); err != nil {
		t.Fatal(err)
	}
	if err := e.Signal(timeout(t), 10); err != nil { // SIGUSR1
		t.Fatalf("signal: %v", err)
	}
	if r := collect(t, e); r.code != 4 {
		t.Fatalf("after SIGUSR1: %+v", r)
	}
	if err := e.Signal(timeout(t), 10); err != nil {
		t.Fatalf("signal after exit: %v", err)
	}

	k := c.exec(t, false, false, "sleep", "1000")
	if err := k.Kill(timeout(t)); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if r := collect(t, k); r.code != 137 {
		t.Fatalf("after kill: %+v", r)
	}

	tty := c.exec(t, true, true, "sh", "-c", "stty -echo; echo ready; read x; stty size")
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(tty.Stdout(), buf, 5)
	if err != nil || !strings.Contains(string(buf[:n]), "ready") {
		t.Fatalf("tty said %q, %v", buf[:n], err)
	}
	if err := tty.ResizeConsole(timeout(t), 50, 132); err != nil {
		t.Fatalf("resize: %v", err)
	}
	io.WriteString(tty.Stdin(), "\n")
	if r := collect(t, tty); !strings.Contains(r.stdout, "50 132") || r.code != 0 {
		t.Fatalf("tty: %+v", r)
	}
}
