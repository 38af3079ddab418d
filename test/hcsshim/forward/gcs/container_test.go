//go:build ignore

package gcs_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Microsoft/go-winio/pkg/guid"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/Microsoft/hcsshim/internal/cmd"
	"github.com/Microsoft/hcsshim/internal/gcs"
	"github.com/Microsoft/hcsshim/internal/hcs/schema1"
	hcsschema "github.com/Microsoft/hcsshim/internal/hcs/schema2"
	"github.com/Microsoft/hcsshim/internal/protocol/guestrequest"
	"github.com/Microsoft/hcsshim/internal/protocol/guestresource"
)

const (
	hrComputeSystemDoesNotExist   = 0xc037010e
	hrComputeSystemAlreadyStopped = 0xc0370110
)

// busyboxLayer makes a read-only layer of busybox and its applets.
func busyboxLayer(t testing.TB, root string) {
	t.Helper()
	bb := mustEnv(t, "UVMGCS_BUSYBOX")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			os.Symlink("busybox", filepath.Join(root, "bin", applet))
		}
	}
}

// lcowSpec is an OCI spec as an LCOW host sends it: the root at the
// combined layers' ContainerRootPath.
func lcowSpec(id, root string, args ...string) *specs.Spec {
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: id,
		Root:     &specs.Root{Path: root},
		Process:  &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}}},
	}
}

// ctr is one container as hcsshim's shim drives it: combined layers, then
// Create with a linuxHostedSystem document.
type ctr struct {
	*gcs.Container
	id, root, scratch string
	layers            guestresource.LCOWCombinedLayers
}

func (a *agent) container(t *testing.T, id string, activity *guid.GUID, args ...string) *ctr {
	t.Helper()
	return a.containerSpec(t, id, activity, nil, args...)
}

// containerSpec is container with edit applied to the spec first.
func (a *agent) containerSpec(t *testing.T, id string, activity *guid.GUID, edit func(*specs.Spec), args ...string) *ctr {
	t.Helper()
	ctx := ctxT(t)
	layer := filepath.Join(a.state, "layers", "busybox")
	if _, err := os.Stat(layer); err != nil {
		busyboxLayer(t, layer)
	}
	c := &ctr{id: id, root: filepath.Join(a.state, "c", id, "rootfs"), scratch: filepath.Join(a.state, "scratch", id)}
	if err := os.MkdirAll(c.scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	c.layers = guestresource.LCOWCombinedLayers{ContainerID: id, ContainerRootPath: c.root,
		Layers: []hcsschema.Layer{{Id: "busybox", Path: layer}}, ScratchPath: c.scratch}
	if err := a.gc.Modify(ctx, modification(guestresource.ResourceTypeCombinedLayers, guestrequest.RequestTypeAdd, c.layers)); err != nil {
		t.Fatalf("CombinedLayers: %v", err)
	}
	spec := lcowSpec(id, c.root, args...)
	if edit != nil {
		edit(spec)
	}
	doc := &linuxHostedSystem{
		SchemaVersion:    &hcsschema.Version{Major: 2, Minor: 1},
		OciBundlePath:    filepath.Join(a.state, "c", id),
		OciSpecification: spec,
		ScratchDirPath:   c.scratch,
	}
	var err error
	if activity != nil {
		c.Container, err = a.gc.CreateContainerWithActivity(ctx, id, *activity, doc)
	} else {
		c.Container, err = a.gc.CreateContainer(ctx, id, doc)
	}
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", id, err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start %s: %v", id, err)
	}
	return c
}

// init starts the container's init as hcsshim's shim does: a Cmd with no
// Spec (the process is the document's).
func (c *ctr) init(t testing.TB, stdin io.Reader) (*cmd.Cmd, *syncBuf) {
	t.Helper()
	out := &syncBuf{}
	ic := &cmd.Cmd{Host: c.Container, Stdin: stdin, Stdout: out, Stderr: out, Log: testLog(t), ExitState: &cmd.ExitState{},
		CopyAfterExitTimeout: time.Second}
	if err := ic.Start(); err != nil {
		t.Fatalf("init of %s: %v", c.id, err)
	}
	return ic, out
}

// waitExit waits for hcsshim's Container to see the exit notification.
func (c *ctr) waitExit(t testing.TB) {
	t.Helper()
	select {
	case <-c.WaitChannel():
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit notification for %s", c.id)
	}
	if err := c.WaitError(); err != nil {
		t.Fatalf("%s: %v", c.id, err)
	}
}

// remove deletes the stopped container's state and its combined layers.
func (a *agent) remove(t testing.TB, c *ctr) {
	t.Helper()
	ctx := ctxT(t)
	if err := a.gc.DeleteContainerState(ctx, c.id); err != nil {
		t.Fatalf("DeleteContainerState %s: %v", c.id, err)
	}
	if err := a.gc.Modify(ctx, modification(guestresource.ResourceTypeCombinedLayers, guestrequest.RequestTypeRemove, c.layers)); err != nil {
		t.Fatalf("CombinedLayers Remove %s: %v", c.id, err)
	}
	if exists(filepath.Join(a.state, "c", c.id)) {
		t.Fatalf("bundle of %s left behind", c.id)
	}
	c.Close()
}

// notes are the exit notifications hcsshim received for id.
func (a *agent) notes(t testing.TB, id string) []string {
	var out []string
	for _, n := range a.tap.notifications(t) {
		if n.ContainerID == id {
			info := ""
			if raw, ok := n.ResultInfo.Value.(*json.RawMessage); ok && raw != nil {
				info = string(*raw)
			}
			out = append(out, fmt.Sprintf("%s activity=%s result=%d info=%s", n.Type, n.ActivityID, n.Result, info))
		}
	}
	return out
}

func TestUvmgcsContainers(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)

	t.Run("Lifecycle", func(t *testing.T) {
		activity, err := guid.NewV4()
		if err != nil {
			t.Fatal(err)
		}
		c := a.container(t, "lifecycle", &activity, "sh", "-c",
			`trap 'echo bye; exit 3' TERM; echo init-started; read line; echo "init got $line"; while :; do sleep 0.1; done`)
		result(t, "ModifySettings CombinedLayers Add", "pass")
		result(t, "Create (linuxHostedSystem document, schema 2.1) + Start", "pass")
		inR, inW := io.Pipe()
		ic, out := c.init(t, inR)
		waitFor(t, func() bool { return strings.Contains(out.String(), "init-started\n") })
		inW.Write([]byte("hello\n"))
		waitFor(t, func() bool { return strings.Contains(out.String(), "init got hello\n") })
		result(t, "ExecuteProcess container init (no OciProcess) with stdin", "pass")

		// An exec, as hcsshim's shim runs one: the OCI process in OciProcess.
		eout, _, code := run(t, c.Container, nil, "sh", "-c", "echo exec in $(hostname); cat /proc/1/cmdline | tr '\\0' ' '")
		if code != 0 || !strings.HasPrefix(eout, "exec in lifecycle\nsh -c trap") {
			t.Fatalf("exec: %q exit %d", eout, code)
		}
		cout, _, _ := run(t, c.Container, strings.NewReader("piped through\n"), "cat")
		if cout != "piped through\n" {
			t.Fatalf("exec stdin: %q", cout)
		}
		_, _, code = run(t, c.Container, nil, "sh", "-c", "exit 9")
		if code != 9 {
			t.Fatalf("exec exit %d", code)
		}
		result(t, "ExecuteProcess exec in a container (OciProcess) with stdin, exit code", "pass")

		// A terminal exec sized from the spec's console size.
		tc := cmd.CommandContext(ctx, c.Container, "stty", "size")
		tc.Spec.Terminal = true
		tc.Spec.ConsoleSize = &specs.Box{Height: 30, Width: 90}
		tout := &syncBuf{}
		tc.Stdout = tout
		if err := tc.Run(); err != nil || strings.TrimSpace(tout.String()) != "30 90" {
			t.Fatalf("tty exec: %q %v", tout.String(), err)
		}
		result(t, "ExecuteProcess exec with a terminal (OciProcess.terminal, consoleSize)", "pass")

		props, err := c.PropertiesV2(ctx, hcsschema.PTProcessList)
		if err != nil || len(props.ProcessList) < 2 {
			t.Fatalf("ProcessList: %+v %v", props, err)
		}
		for _, p := range props.ProcessList {
			if p.ProcessId <= 0 {
				t.Fatalf("ProcessList entry %+v", p)
			}
		}
		p1, err := c.Properties(ctx, schema1.PropertyTypeProcessList)
		if err != nil || len(p1.ProcessList) < 2 {
			t.Fatalf("schema1 ProcessList: %+v %v", p1, err)
		}
		result(t, "GetProperties ProcessList (hcsschema.Properties and schema1.ContainerProperties)", fmt.Sprintf("pass (%d processes)", len(props.ProcessList)))

		stats, err := c.PropertiesV2(ctx, hcsschema.PTStatistics)
		if err != nil || stats.Metrics == nil {
			t.Fatalf("Statistics: %+v %v", stats, err)
		}
		m := stats.Metrics
		if m.Memory == nil || m.Memory.Usage == nil || m.Memory.Usage.Usage == 0 || m.Pids == nil || m.Pids.Current < 2 ||
			m.CPU == nil || m.CPU.Usage == nil || m.CPU.Usage.Total == 0 {
			t.Fatalf("metrics %+v", m)
		}
		result(t, "GetProperties Statistics (LCOWMetrics as containerd cgroups v1 Metrics)",
			fmt.Sprintf("pass (memory %d B, %d pids, cpu %d ns)", m.Memory.Usage.Usage, m.Pids.Current, m.CPU.Usage.Total))

		limit := int64(96 << 20)
		err = c.Modify(ctx, guestrequest.ModificationRequest{ResourceType: guestresource.ResourceTypeContainerConstraints,
			RequestType: guestrequest.RequestTypeUpdate,
			Settings:    guestresource.LCOWContainerConstraints{Linux: specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}}})
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		if got := a.memoryLimit(t, c.id); got != limit {
			t.Fatalf("memory limit %d after update, want %d", got, limit)
		}
		result(t, "ModifySettings ContainerConstraints Update (container)", "pass (memory limit in the cgroup)")

		if err := c.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		c.waitExit(t)
		inW.Close()
		if err := ic.Wait(); ic.ExitState.ExitCode() != 3 {
			t.Fatalf("init exit %d (%v), output %q", ic.ExitState.ExitCode(), err, out.String())
		}
		want := fmt.Sprintf(`GracefulExit activity=%s result=0 info={"ExitCode":3}`, activity)
		if n := a.notes(t, c.id); len(n) != 1 || n[0] != want {
			t.Fatalf("notifications %q, want [%q]", n, want)
		}
		result(t, "ShutdownGraceful + exit notification", "pass (GracefulExit, ActivityId of the Create, Result 0; init exit 3 from WaitForProcess)")
		// Stopping a stopped container: already stopped, as hcsshim's own
		// guest answers (its shim takes that for success).
		a.cleanError(t, "ShutdownForced of a stopped container", c.Terminate(ctx), hrComputeSystemAlreadyStopped, `container "lifecycle"`)
		a.remove(t, c)
		result(t, "DeleteContainerState + CombinedLayers Remove", "pass (bundle gone)")
		err = a.gc.DeleteContainerState(ctx, c.id)
		a.cleanError(t, "DeleteContainerState of a deleted container", err, hrComputeSystemDoesNotExist, `container "lifecycle"`)
	})

	t.Run("Forced", func(t *testing.T) {
		c := a.container(t, "forced", nil, "sleep", "100")
		ic, _ := c.init(t, nil)
		if err := c.Terminate(ctx); err != nil {
			t.Fatal(err)
		}
		c.waitExit(t)
		ic.Wait()
		if code := ic.ExitState.ExitCode(); code != 137 {
			t.Fatalf("init exit %d", code)
		}
		want := `ForcedExit activity=00000000-0000-0000-0000-000000000000 result=0 info={"ExitCode":137}`
		if n := a.notes(t, c.id); len(n) != 1 || n[0] != want {
			t.Fatalf("notifications %q, want [%q]", n, want)
		}
		result(t, "ShutdownForced + exit notification", "pass (ForcedExit, init exit 137)")
		a.remove(t, c)
	})

	t.Run("InitExits", func(t *testing.T) {
		c := a.container(t, "exits", nil, "sh", "-c", "echo bye; exit 7")
		ic, out := c.init(t, nil)
		c.waitExit(t)
		ic.Wait()
		if code := ic.ExitState.ExitCode(); code != 7 || out.String() != "bye\n" {
			t.Fatalf("init exit %d output %q", code, out.String())
		}
		want := `UnexpectedExit activity=00000000-0000-0000-0000-000000000000 result=0 info={"ExitCode":7}`
		if n := a.notes(t, c.id); len(n) != 1 || n[0] != want {
			t.Fatalf("notifications %q, want [%q]", n, want)
		}
		result(t, "container init exits by itself + exit notification", "pass (UnexpectedExit, init exit 7 from WaitForProcess)")
		a.remove(t, c)
	})

	// Every container got exactly one notification (a second would have
	// ended hcsshim's bridge: its notify fails for an unknown container).
	time.Sleep(200 * time.Millisecond)
	a.alive(t)
	seen := map[string]int{}
	for _, n := range a.tap.notifications(t) {
		seen[n.ContainerID]++
	}
	for _, id := range []string{"lifecycle", "forced", "exits"} {
		if seen[id] != 1 {
			t.Errorf("%s: %d exit notifications", id, seen[id])
		}
	}
	if len(seen) != 3 {
		t.Errorf("notifications for %v", seen)
	}
	result(t, "exactly one exit notification per container", "pass")
}

// memoryLimit reads the container's cgroup v1 memory limit.
func (a *agent) memoryLimit(t testing.TB, id string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", a.cgroup, id, "memory.limit_in_bytes"))
	if err != nil {
		t.Fatal(err)
	}
	var v int64
	fmt.Sscan(string(b), &v)
	return v
}
