package test

import (
	"context"
	"os"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/protocol"
)

// idle waits out the agent's quiet spell (250 ms after the last container
// request), after which it has dropped libcontainer's objects of started
// containers: the next request loads them from libcontainer's state.
func idle() { time.Sleep(400 * time.Millisecond) }

// TestContainerOpsAfterIdle: every operation on a running container, and
// its exit and OOM reports, work when each comes after the agent went
// idle.
func TestContainerOpsAfterIdle(t *testing.T) {
	a := startContainerAgent(t)
	ctx := context.Background()
	c, p := a.started(t, a.spec("sleep", "100"), false)

	idle()
	props, m, err := c.Properties(ctx, protocol.PropertyTypeProcessList, protocol.PropertyTypeStatistics)
	if err != nil {
		t.Fatal(err)
	}
	if len(props.ProcessList) == 0 || m == nil || m.Memory == nil {
		t.Fatalf("process list %+v, metrics %+v", props.ProcessList, m)
	}
	idle()
	limit := int64(48 << 20)
	if err := c.Update(ctx, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatal(err)
	}
	if got := readCgroupMemoryLimit(t, a.cgroup, c.ID()); got != limit {
		t.Fatalf("memory limit in the cgroup %d, want %d", got, limit)
	}
	idle()
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	idle()
	if st, err := c.State(ctx); err != nil || st.Status != protocol.StatusPaused {
		t.Fatalf("state of a paused container: %+v, %v", st, err)
	}
	idle()
	if _, err := c.Exec(ctx, &specs.Process{Args: []string{"true"}, Cwd: "/"}, stdio(false)); !host.IsInvalidState(err) {
		t.Fatalf("exec into a paused container: %v, want invalid state", err)
	}
	idle()
	if err := c.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	idle()
	if r := execIn(t, c, "echo", "back"); r.stdout != "back\n" || r.code != 0 {
		t.Fatalf("exec after idle: %+v", r)
	}
	idle()
	e, err := c.Exec(ctx, &specs.Process{Args: []string{"sleep", "100"}, Cwd: "/"}, stdio(false))
	if err != nil {
		t.Fatal(err)
	}
	idle()
	if err := e.Signal(ctx, 15); err != nil {
		t.Fatal(err)
	}
	if r := collect(t, e); r.code != 143 {
		t.Fatalf("exec signalled after idle: exit %d, want 143", r.code)
	}
	idle()
	if err := c.Terminate(ctx); err != nil {
		t.Fatal(err)
	}
	if r := collect(t, p); r.code != 137 || c.OOMKilled() {
		t.Fatalf("init killed after idle: exit %d, OOMKilled %v; want 137, not an OOM kill", r.code, c.OOMKilled())
	}
	if n := c.ExitNotification(); n.Type != protocol.NotificationForcedExit {
		t.Fatalf("exit notification %+v", n)
	}
	idle()
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/sys/fs/cgroup/memory" + a.cgroup + "/" + c.ID(), "/sys/fs/cgroup" + a.cgroup + "/" + c.ID()} {
		if _, err := os.Stat(d); err == nil {
			t.Fatalf("cgroup %s outlived the delete", d)
		}
	}

	// An OOM kill that comes after the agent went idle is reported.
	a.runOOMKilled(t, "sleep 1")
}
