package test

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/protocol"
)

// nextEvent reads ch until an event of type typ for cid arrives.
func nextEvent(t *testing.T, ch <-chan host.Event, typ host.EventType, cid string) host.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("event stream closed while waiting for %s of %s", typ, cid)
			}
			if e.Type == typ && e.ContainerID == cid {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event for %s", typ, cid)
		}
	}
}

// TestShimCalls: what a containerd shim calls, against the real agent:
// two event watchers see an exec's exit and the init's, Signal reaches the
// init and says NotFound once it has exited, a second OpenContainer is the
// same handle, statistics come as cgroup v1 Metrics, and errors match
// errdefs.
func TestShimCalls(t *testing.T) {
	a := startContainerAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ev1, stop1 := a.gc.Events()
	defer stop1()
	ev2, stop2 := a.gc.Events()
	defer stop2()

	// The init is pid 1 of its namespace: it sees SIGTERM only through a trap.
	c, _ := a.started(t, a.spec("sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.1; done"), false)
	if again, err := a.gc.OpenContainer(ctx, c.ID()); err != nil || again != c {
		t.Fatalf("OpenContainer of a created container: %p, %v; want the same handle %p", again, err, c)
	}
	if r := execIn(t, c, "sh", "-c", "exit 4"); r.code != 4 {
		t.Fatalf("exec: %+v", r)
	}
	for _, ch := range []<-chan host.Event{ev1, ev2} {
		if e := nextEvent(t, ch, host.EventExecExit, c.ID()); e.ExitCode != 4 || e.Pid == 0 {
			t.Fatalf("exec exit event %+v", e)
		}
	}
	m, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Pids == nil || m.Pids.Current == 0 || m.Memory == nil || m.Memory.Usage == nil || m.Memory.Usage.Usage == 0 {
		t.Fatalf("metrics %+v", m)
	}
	if _, err := a.gc.CreateContainer(ctx, c.ID(), a.spec("true")); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("create of an existing id: %v, want AlreadyExists", err)
	}
	if _, err := a.gc.OpenContainer(ctx, "no-such-container"); !errdefs.IsNotFound(err) {
		t.Fatalf("open of a missing container: %v, want NotFound", err)
	}

	if err := c.Signal(ctx, host.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan host.Event{ev1, ev2} {
		if e := nextEvent(t, ch, host.EventExit, c.ID()); e.ExitCode != 7 {
			t.Fatalf("exit event %+v", e)
		}
	}
	if code, err := c.ExitCode(); err != nil || code != 7 {
		t.Fatalf("exit code %d, %v", code, err)
	}
	if err := c.Signal(ctx, host.SIGTERM); !errdefs.IsNotFound(err) {
		t.Fatalf("signal after exit: %v, want NotFound", err)
	}
	if err := c.Kill(ctx); err != nil {
		t.Fatalf("kill after exit: %v", err)
	}
}

// TestShimOOMEvent: an OOM kill is an EventOOM before the EventExit.
func TestShimOOMEvent(t *testing.T) {
	a := startContainerAgent(t)
	ev, stop := a.gc.Events()
	defer stop()
	s := a.spec("sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a)")
	limit := int64(16 << 20)
	s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	c, _ := a.started(t, s, false)
	first := nextEvent(t, ev, host.EventOOM, c.ID())
	exit := nextEvent(t, ev, host.EventExit, c.ID())
	if !exit.OOMKilled || exit.ExitCode != 137 || exit.At.Before(first.At) {
		t.Fatalf("oom %+v, exit %+v", first, exit)
	}
}

// TestShimReconnectKill: after the host reconnects (a restarted shim), a
// reopened container and an exec it had are found again; the container
// is killed and waited for, the exec's exit is reported, and a second
// open returns the same handle, so no Wait is left hanging.
func TestShimReconnectKill(t *testing.T) {
	a := startContainerAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const id = "reconnect"
	c, err := a.gc.CreateContainer(ctx, id, a.spec("sleep", "100"))
	if err != nil {
		t.Fatal(err)
	}
	gc := a.gc
	t.Cleanup(func() { // through whichever connection is live
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := gc.OpenContainer(ctx, id); err == nil {
			c.Kill(ctx)
			c.Delete(ctx)
		}
	})
	if _, err := c.CreateProcess(ctx, &protocol.ProcessParameters{}); err != nil {
		t.Fatal(err)
	}
	ex, err := c.Exec(ctx, &specs.Process{Args: []string{"sleep", "100"}, Cwd: "/"}, &protocol.ProcessParameters{})
	if err != nil {
		t.Fatal(err)
	}
	a.gc.Close()
	if gc, err = a.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	o1, err := gc.OpenContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	o2, err := gc.OpenContainer(ctx, id)
	if err != nil || o2 != o1 {
		t.Fatalf("second open: %p %v, want %p", o2, err, o1)
	}
	p := o1.OpenProcess(ex.Pid())
	if err := o1.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*host.Container{o1, o2} {
		select {
		case <-h.WaitChannel():
		case <-ctx.Done():
			t.Fatal("a handle's Wait hangs")
		}
	}
	if code, err := o1.ExitCode(); err != nil || code != 137 {
		t.Fatalf("exit %d, %v", code, err)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("wait for the reopened exec: %v", err)
	}
	if code, err := p.ExitCode(); err != nil || code != 137 {
		t.Fatalf("reopened exec exit %d, %v", code, err)
	}
	if err := o1.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}
