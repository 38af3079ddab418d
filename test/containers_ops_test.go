package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/protocol"
)

// runOOMKilled runs a container, limited to 16 MiB, that after its shell
// command pre (if any) fills 200 MB of memory; it must die by an OOM kill
// with 137 and be flagged OOMKilled.
func (a *ctrAgent) runOOMKilled(t *testing.T, pre string) {
	t.Helper()
	script := "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"
	if pre != "" {
		script = pre + "; " + script
	}
	s := a.spec("sh", "-c", script)
	limit := int64(16 << 20)
	s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	c, r := a.run(t, s)
	if r.code != 137 || !c.OOMKilled() {
		t.Fatalf("exit %d (stdout %q stderr %q), OOMKilled %v; want 137 and flagged", r.code, r.stdout, r.stderr, c.OOMKilled())
	}
}

func TestContainerOOMKilled(t *testing.T) {
	a := startContainerAgent(t)
	a.runOOMKilled(t, "")
	// A plain SIGKILL is not an OOM kill.
	c, p := a.started(t, a.spec("sleep", "100"), false)
	c.Terminate(context.Background())
	if r := collect(t, p); r.code != 137 || c.OOMKilled() {
		t.Fatalf("SIGKILL: exit %d, OOMKilled %v", r.code, c.OOMKilled())
	}
}

// TestContainerOrphansReaped: processes a container leaves behind are
// collected; the agent keeps no zombies.
func TestContainerOrphansReaped(t *testing.T) {
	a := startContainerAgent(t)
	for _, s := range []*specs.Spec{
		a.spec("sh", "-c", "sleep 100 & sleep 100 & exit 0"),
		sharedPid(a.spec("sh", "-c", "sleep 100 & sleep 100 & exit 0")),
	} {
		if _, r := a.run(t, s); r.code != 0 {
			t.Fatalf("exit %d", r.code)
		}
	}
	waitFor(t, func() bool { return len(zombieChildren(a.Pid())) == 0 })
}

// zombieChildren lists pid's children that are zombies.
func zombieChildren(pid int) []int {
	var z []int
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			st, err := os.ReadFile("/proc/" + s + "/stat")
			if err != nil {
				continue
			}
			if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
				var n int
				fmt.Sscan(s, &n)
				z = append(z, n)
			}
		}
	}
	return z
}

func TestContainerPauseExecResume(t *testing.T) {
	a := startContainerAgent(t)
	if !a.gc.Capabilities().GuestDefinedCapabilities.UvmgcsPauseResumeSupported {
		t.Fatal("agent does not announce pause/resume")
	}
	c, _ := a.started(t, a.spec("sleep", "100"), false)
	ctx := context.Background()
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := c.Exec(ctx, &specs.Process{Args: []string{"true"}, Cwd: "/"}, stdio(false))
	if !host.IsInvalidState(err) {
		t.Fatalf("exec into a paused container: %v, want invalid state", err)
	}
	if err := c.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if r := execIn(t, c, "echo", "back"); r.stdout != "back\n" {
		t.Fatalf("exec after resume: %+v", r)
	}
	if err := c.Resume(ctx); !host.IsInvalidState(err) {
		t.Fatalf("resume a running container: %v", err)
	}
}

func TestContainerUpdateAndProperties(t *testing.T) {
	a := startContainerAgent(t)
	c, p := a.started(t, a.spec("sleep", "100"), false)
	ctx := context.Background()
	limit := int64(64 << 20)
	if err := c.Update(ctx, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatal(err)
	}
	got := readCgroupMemoryLimit(t, a.cgroup, c.ID())
	if got != limit {
		t.Fatalf("memory limit in the cgroup %d, want %d", got, limit)
	}
	// The pids controller counts tasks: the init's threads stay counted
	// for a moment after it execs the container's process, longer on a
	// busy machine, so the count is read until it settles.
	var (
		props *protocol.Properties
		m     *protocol.Metrics
		err   error
	)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		props, m, err = c.Properties(ctx, protocol.PropertyTypeProcessList, protocol.PropertyTypeStatistics)
		if err != nil {
			t.Fatal(err)
		}
		if m == nil || m.Pids == nil || m.Pids.Current == 1 || time.Now().After(deadline) {
			break
		}
	}
	if len(props.ProcessList) != 1 || int(props.ProcessList[0].ProcessID) != p.Pid() {
		t.Fatalf("process list %+v, init %d", props.ProcessList, p.Pid())
	}
	if m == nil || m.Memory == nil || m.Pids == nil {
		t.Fatalf("metrics %+v", m)
	}
	if m.Memory.Usage.Usage == 0 || m.Memory.Usage.Limit != uint64(limit) || m.Pids.Current != 1 {
		t.Fatalf("memory usage %+v (want a usage and limit %d), pids %+v (want 1)", m.Memory.Usage, limit, m.Pids)
	}
	if err := c.Update(ctx, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(100))}}); err == nil {
		t.Fatal("a 100-byte memory limit was accepted")
	}
}

func ptr[T any](v T) *T { return &v }

// readCgroupMemoryLimit reads the container's memory limit from whichever
// cgroup version holds it.
func readCgroupMemoryLimit(t *testing.T, parent, id string) int64 {
	for _, f := range []string{
		"/sys/fs/cgroup/memory" + parent + "/" + id + "/memory.limit_in_bytes",
		"/sys/fs/cgroup" + parent + "/" + id + "/memory.max",
	} {
		if b, err := os.ReadFile(f); err == nil {
			var n int64
			fmt.Sscan(string(b), &n)
			return n
		}
	}
	t.Fatal("no memory cgroup file for the container")
	return 0
}

func TestPodSharesNamespaces(t *testing.T) {
	a := startContainerAgent(t)
	sb := a.spec("sleep", "100")
	sb.Hostname = "pod"
	sb.Annotations = map[string]string{"io.kubernetes.cri.container-type": "sandbox"}
	sandbox, _ := a.started(t, sb, false)
	var nets []string
	for i := 0; i < 2; i++ {
		s := a.spec("sleep", "100")
		s.Annotations = map[string]string{
			"io.kubernetes.cri.container-type": "container",
			"io.kubernetes.cri.sandbox-id":     sandbox.ID(),
		}
		c, _ := a.started(t, s, false)
		r := execIn(t, c, "sh", "-c", "readlink /proc/self/ns/net; hostname; cat /etc/hostname")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 3 || lines[1] != "pod" || lines[2] != "pod" {
			t.Fatalf("workload %d: %q", i, r.stdout)
		}
		nets = append(nets, lines[0])
	}
	if sr := execIn(t, sandbox, "readlink", "/proc/self/ns/net"); strings.TrimSpace(sr.stdout) != nets[0] || nets[0] != nets[1] {
		t.Fatalf("network namespaces differ: sandbox %q, workloads %q", sr.stdout, nets)
	}
}

func TestContainerBadRequests(t *testing.T) {
	a := startContainerAgent(t)
	ctx := context.Background()
	missing := a.spec("true")
	missing.Root.Path = filepath.Join(a.state, "no-such-rootfs")
	outside := a.spec("true")
	outside.Root.Path = "/"
	absurd := a.spec("true")
	absurd.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(4096))}}
	noArgs := a.spec()
	for _, tc := range []struct {
		name string
		id   string
		spec *specs.Spec
	}{
		{"missing rootfs", "bad1", missing},
		{"rootfs outside the state root", "bad2", outside},
		{"absurd memory limit", "bad3", absurd},
		{"no args", "bad4", noArgs},
		{"id with a slash", "../escape", a.spec("true")},
		{"id too long", strings.Repeat("x", 200), a.spec("true")},
		{"the utility VM's id", protocol.UVMContainerID, a.spec("true")},
	} {
		if _, err := a.gc.CreateContainer(ctx, tc.id, tc.spec); !isError(err, protocol.HrInvalidArg) {
			t.Errorf("%s: %v, want E_INVALIDARG", tc.name, err)
		}
	}
	c := a.create(t, a.spec("true"))
	if _, err := a.gc.CreateContainer(ctx, c.ID(), a.spec("true")); !host.IsAlreadyExists(err) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := a.gc.ExecProcess(ctx, "nope", stdio(false)); !host.IsNotFound(err) {
		t.Errorf("exec in a missing container: %v", err)
	}
	// A command that does not exist fails the start, not the agent.
	c2 := a.create(t, a.spec("/no/such/binary"))
	if _, err := c2.CreateProcess(ctx, stdio(false)); !host.IsNotFound(err) {
		t.Errorf("starting a missing binary: %v, want not found", err)
	}
	// Still serving.
	if _, r := a.run(t, a.spec("echo", "alive")); r.stdout != "alive\n" {
		t.Fatalf("after bad requests: %+v", r)
	}
}

func isError(err error, hr protocol.HResult) bool {
	var pe *protocol.Error
	return errors.As(err, &pe) && pe.Result == hr
}

// TestContainerLifecycleMatrix: each request in each state gets the answer
// a runc user would expect, and the agent keeps serving.
func TestContainerLifecycleMatrix(t *testing.T) {
	a := startContainerAgent(t)
	ctx := context.Background()
	exec := func(c *host.Container) error {
		p, err := c.Exec(ctx, &specs.Process{Args: []string{"true"}, Cwd: "/"}, stdio(false))
		if err == nil {
			collect(t, p)
		}
		return err
	}

	// Created, never started.
	c := a.create(t, a.spec("sleep", "100"))
	for name, err := range map[string]error{
		"exec":     exec(c),
		"pause":    c.Pause(ctx),
		"resume":   c.Resume(ctx),
		"shutdown": c.Shutdown(ctx),
	} {
		if !host.IsInvalidState(err) {
			t.Errorf("created: %s = %v, want invalid state", name, err)
		}
	}

	// Running.
	_, init := a.started(t, a.spec("sleep", "100"), false)
	_ = init
	c2 := a.create(t, a.spec("sleep", "100"))
	if _, err := c2.CreateProcess(ctx, stdio(false)); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.CreateProcess(ctx, stdio(false)); !host.IsInvalidState(err) {
		t.Errorf("running: second init = %v, want invalid state", err)
	}
	if err := c2.Delete(ctx); !host.IsInvalidState(err) {
		t.Errorf("running: delete = %v, want invalid state", err)
	}

	// Stopped.
	if err := c2.Terminate(ctx); err != nil {
		t.Fatal(err)
	}
	c2.Wait()
	if err := exec(c2); !host.IsInvalidState(err) {
		t.Errorf("stopped: exec = %v, want invalid state", err)
	}
	if err := c2.Pause(ctx); !host.IsInvalidState(err) {
		t.Errorf("stopped: pause = %v, want invalid state", err)
	}
	if st, err := c2.State(ctx); err != nil || st.Status != protocol.StatusStopped || st.ExitCode != 137 {
		t.Errorf("stopped: state %+v, %v", st, err)
	}
	if err := c2.Delete(ctx); err != nil {
		t.Fatalf("stopped: delete = %v", err)
	}
	if _, err := c2.State(ctx); !host.IsNotFound(err) {
		t.Errorf("deleted: state = %v, want not found", err)
	}
	// Gone: the id can be used again.
	c3 := a.create(t, a.spec("true"))
	_ = c3
}

// TestHostDefaultSpec: the library's default spec runs as is.
func TestHostDefaultSpec(t *testing.T) {
	a := startContainerAgent(t)
	_, r := a.run(t, host.DefaultSpec(a.rootfs, []string{"sh", "-c", "hostname; id -u"}, false))
	if r.stdout != "uvmgcs\n0\n" || r.code != 0 {
		t.Fatalf("default spec: %+v", r)
	}
}

// TestContainerCgroupsMadeAtCreate: a created container's cgroup
// directories appear before its start (the agent makes them while the host
// sends the start), in every mounted hierarchy; the cleanup's delete of
// the container never started must remove them (removeCgroupTree fails on
// any left).
func TestContainerCgroupsMadeAtCreate(t *testing.T) {
	a := startContainerAgent(t)
	c := a.create(t, a.spec("true"))
	var roots []string
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		roots = []string{"/sys/fs/cgroup"}
	} else {
		ents, _ := os.ReadDir("/sys/fs/cgroup")
		for _, e := range ents {
			d := filepath.Join("/sys/fs/cgroup", e.Name())
			if unix.Statfs(d, &st) == nil && (st.Type == unix.CGROUP_SUPER_MAGIC || st.Type == unix.CGROUP2_SUPER_MAGIC) {
				roots = append(roots, d)
			}
		}
	}
	if len(roots) == 0 {
		t.Fatal("no cgroup hierarchy mounted under /sys/fs/cgroup")
	}
	waitFor(t, func() bool {
		for _, r := range roots {
			if !exists(filepath.Join(r, a.cgroup, c.ID())) {
				return false
			}
		}
		return true
	})
}
