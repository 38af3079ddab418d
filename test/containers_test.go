package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/hostmode"
	"github.com/uvmgcs/gcs/protocol"
)

// busybox is Debian's busybox-static, the only binary test containers need.
const busybox = "/bin/busybox"

// ctrAgent is a host-mode agent set up to run containers: a busybox rootfs
// inside its state root and a cgroup parent of its own.
type ctrAgent struct {
	*agent
	state  string
	rootfs string
	cgroup string
}

var cgroupSeq atomic.Int64

func startContainerAgent(t testing.TB) *ctrAgent {
	t.Helper()
	return startContainerAgentIn(t, t.TempDir())
}

// startContainerAgentIn is startContainerAgent with its state root in
// state.
func startContainerAgentIn(t testing.TB, state string) *ctrAgent {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): containers need root")
	}
	if _, err := os.Stat(busybox); err != nil {
		t.Fatalf("%s is missing (apt-get install busybox-static; `make deps` does): %v", busybox, err)
	}
	rootfs := filepath.Join(state, "layers", "busybox")
	buildBusyboxRootfs(t, rootfs)
	cg := fmt.Sprintf("/gcs-test-%d-%d", os.Getpid(), cgroupSeq.Add(1))
	t.Cleanup(func() { removeCgroupTree(t, cg) })
	a := startAgentWith(t, hostmode.Config{StateRoot: state, Args: []string{"-cgroup-parent", cg}})
	checkThreadsMountNamespace(t, a.Pid())
	return &ctrAgent{agent: a, state: state, rootfs: rootfs, cgroup: cg}
}

// checkThreadsMountNamespace records the agent's mount namespace and, when
// the test ends (after its containers are deleted), checks that every
// thread of the agent is still in it: a thread parked in a container's
// namespace would keep that container's mounts alive.
func checkThreadsMountNamespace(t testing.TB, pid int) {
	t.Helper()
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/ns/mnt", pid))
		for _, f := range tasks {
			if got, err := os.Readlink(f); err == nil && got != want {
				t.Errorf("agent thread %s is in mount namespace %s, not the agent's %s", f, got, want)
			}
		}
	})
}

// buildBusyboxRootfs makes a root filesystem of busybox and its applets.
func buildBusyboxRootfs(t testing.TB, root string) {
	t.Helper()
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		os.Symlink("busybox", filepath.Join(root, "bin", applet))
	}
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
}

// removeCgroupTree removes the test's cgroup parent from every hierarchy;
// any cgroup left inside it is a leak and fails the test.
func removeCgroupTree(t testing.TB, parent string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	if d := "/sys/fs/cgroup" + parent; exists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.IsDir() {
				t.Errorf("cgroup %s/%s left behind", d, e.Name())
				os.Remove(filepath.Join(d, e.Name()))
			}
		}
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			t.Errorf("remove cgroup %s: %v", d, err)
		}
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// spec is a runc-default spec running args over the busybox rootfs.
func (a *ctrAgent) spec(args ...string) *specs.Spec {
	s := specconv.Example()
	s.Root.Path = a.rootfs
	s.Process.Terminal = false
	s.Process.Args = args
	s.Hostname = "ctr"
	return s
}

var ctrSeq atomic.Int64

// create creates a container; it is terminated and deleted when the test
// ends, and its state must then be gone.
func (a *ctrAgent) create(t testing.TB, spec *specs.Spec) *host.Container {
	t.Helper()
	id := fmt.Sprintf("c%d", ctrSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := a.gc.CreateContainer(ctx, id, spec)
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// A container that never started has no exit to wait for.
		if err := c.Terminate(ctx); err == nil {
			select {
			case <-c.WaitChannel():
			case <-time.After(20 * time.Second):
				t.Errorf("%s did not exit after terminate", id)
			}
		}
		if err := c.Delete(ctx); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
		if exists(filepath.Join(a.state, "c", id)) || exists(filepath.Join(a.state, "runc", id)) {
			t.Errorf("state of %s left behind", id)
		}
		// Delete has returned; give the kernel a moment to finish any
		// teardown it does in the background, then nothing may be left.
		var left []string
		for try := 0; try < 40; try++ {
			left = mountsUnder(a.Pid(), filepath.Join(a.state, "c", id))
			if len(left) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(left) > 0 {
			t.Errorf("mounts of %s left in the agent's namespace:\n%s", id, strings.Join(left, "\n"))
		}
	})
	return c
}

// mountsUnder returns the mountinfo lines of process pid that name dir.
func mountsUnder(pid int, dir string) []string {
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return nil
	}
	var lines []string
	for _, line := range strings.Split(string(mi), "\n") {
		if strings.Contains(line, dir+" ") || strings.Contains(line, dir+"/") {
			lines = append(lines, line)
		}
	}
	return lines
}

// stdio says which streams a process gets.
func stdio(in bool) *protocol.ProcessParameters {
	return &protocol.ProcessParameters{CreateStdInPipe: in, CreateStdOutPipe: true, CreateStdErrPipe: true}
}

// collect reads a process's output and waits for its exit.
func collect(t testing.TB, p *host.Process) runResult {
	t.Helper()
	var out, errOut bytes.Buffer
	var wg sync.WaitGroup
	if r := p.Stdout(); r != nil {
		wg.Go(func() { io.Copy(&out, r) })
	}
	if r := p.Stderr(); r != nil {
		wg.Go(func() { io.Copy(&errOut, r) })
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}
	wg.Wait()
	code, err := p.ExitCode()
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	return runResult{out.String(), errOut.String(), code}
}

// run creates a container running args, starts it and collects its init.
func (a *ctrAgent) run(t testing.TB, spec *specs.Spec) (*host.Container, runResult) {
	t.Helper()
	c := a.create(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := c.CreateProcess(ctx, stdio(false))
	if err != nil {
		t.Fatalf("start %s: %v", c.ID(), err)
	}
	r := collect(t, p)
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	return c, r
}

func TestContainerRunAndExitCodes(t *testing.T) {
	a := startContainerAgent(t)
	for _, tc := range []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"echo", "hello"}, "hello\n", 0},
		{[]string{"sh", "-c", "exit 42"}, "", 42},
		{[]string{"hostname"}, "ctr\n", 0},
		{[]string{"sh", "-c", "echo $$"}, "1\n", 0},
	} {
		c, r := a.run(t, a.spec(tc.args...))
		if r.stdout != tc.out || r.code != tc.code {
			t.Errorf("%v: stdout %q stderr %q code %d; want %q %d", tc.args, r.stdout, r.stderr, r.code, tc.out, tc.code)
		}
		n := c.ExitNotification()
		if code, _ := c.ExitCode(); code != tc.code || n.Type != protocol.NotificationUnexpectedExit {
			t.Errorf("%v: notification %+v, code %d", tc.args, n, code)
		}
	}
}

// started creates a container whose init runs args and starts it; the init
// process is returned with its stdio.
func (a *ctrAgent) started(t testing.TB, spec *specs.Spec, in bool) (*host.Container, *host.Process) {
	t.Helper()
	c := a.create(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := c.CreateProcess(ctx, stdio(in))
	if err != nil {
		t.Fatalf("start %s: %v", c.ID(), err)
	}
	t.Cleanup(func() { p.Close() })
	return c, p
}

// sharedPid drops the spec's pid namespace: the container shares the
// agent's.
func sharedPid(s *specs.Spec) *specs.Spec {
	ns := s.Linux.Namespaces[:0]
	for _, n := range s.Linux.Namespaces {
		if n.Type != specs.PIDNamespace {
			ns = append(ns, n)
		}
	}
	s.Linux.Namespaces = ns
	return s
}

// execIn runs args in c and collects the result.
func execIn(t testing.TB, c *host.Container, args ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := c.Exec(ctx, &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}}, stdio(false))
	if err != nil {
		t.Fatalf("exec %v: %v", args, err)
	}
	return collect(t, p)
}

func TestContainerSignalsAndShutdown(t *testing.T) {
	a := startContainerAgent(t)
	ctx := context.Background()

	// Without a pid namespace of its own the init is not pid 1, so a
	// signal without a handler kills it as it would any process.
	c, p := a.started(t, sharedPid(a.spec("sleep", "100")), false)
	if err := p.Signal(ctx, 15); err != nil {
		t.Fatal(err)
	}
	if r := collect(t, p); r.code != 143 {
		t.Fatalf("SIGTERM: exit %d", r.code)
	}
	c.Wait()

	for _, tc := range []struct {
		forced bool
		want   string
		code   int
	}{{false, protocol.NotificationGracefulExit, 143}, {true, protocol.NotificationForcedExit, 137}} {
		c, p := a.started(t, sharedPid(a.spec("sleep", "100")), false)
		var err error
		if tc.forced {
			err = c.Terminate(ctx)
		} else {
			err = c.Shutdown(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		r := collect(t, p)
		n := c.ExitNotification()
		// Result is an HRESULT (0, as hcsshim's guest sends), never the
		// exit code; ActivityId echoes the Create's, a GUID.
		if _, err := uuid.Parse(n.ActivityID); r.code != tc.code || n.Type != tc.want || n.Result != 0 || err != nil {
			t.Errorf("forced=%v: exit %d, notification %+v", tc.forced, r.code, n)
		}
		// Stopping a stopped container is not an error for the host.
		if err := c.Terminate(ctx); err != nil {
			t.Errorf("terminate after exit: %v", err)
		}
	}
}

// TestContainerWaitTimeout: a container process's wait with a timeout ends
// at the timeout while the process runs on; the exit still reaches every
// wait, and the init's exit code stays for later waits.
func TestContainerWaitTimeout(t *testing.T) {
	a := startContainerAgent(t)
	ctx := context.Background()
	c, init := a.started(t, a.spec("sleep", "100"), false)
	exec, err := c.Exec(ctx, &specs.Process{Args: []string{"sleep", "100"}, Cwd: "/"}, &protocol.ProcessParameters{})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Close()
	wait := func(pid int, timeout uint32) (uint32, error) {
		var resp protocol.WaitForProcessResponse
		err := a.gc.RPC(ctx, protocol.WaitForProcess, &protocol.WaitForProcessRequest{
			RequestBase: protocol.RequestBase{ContainerID: c.ID()},
			ProcessID:   uint32(pid), TimeoutInMs: timeout,
		}, &resp)
		return resp.ExitCode, err
	}
	for _, p := range []*host.Process{init, exec} {
		start := time.Now()
		if _, err := wait(p.Pid(), 100); !errors.Is(err, protocol.HrVmcomputeTimeout) || !host.IsTimeout(err) {
			t.Fatalf("pid %d: wait with timeout: %v", p.Pid(), err)
		}
		if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
			t.Fatalf("pid %d: timed out after %v", p.Pid(), d)
		}
	}
	if err := exec.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := exec.Wait(); err != nil {
		t.Fatal(err)
	}
	if code, _ := exec.ExitCode(); code != 137 {
		t.Fatalf("exec: exit %d", code)
	}
	if err := init.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := init.Wait(); err != nil {
		t.Fatal(err)
	}
	if code, err := wait(init.Pid(), 10000); err != nil || code != 137 {
		t.Fatalf("init: wait after exit: %d, %v", code, err)
	}
}

func TestContainerExecAndStdio(t *testing.T) {
	a := startContainerAgent(t)
	c, init := a.started(t, a.spec("sleep", "100"), false)
	_ = init
	if r := execIn(t, c, "sh", "-c", "echo out; echo err >&2; exit 3"); r.stdout != "out\n" || r.stderr != "err\n" || r.code != 3 {
		t.Fatalf("exec: %+v", r)
	}
	// Same namespaces as the init.
	if r := execIn(t, c, "hostname"); r.stdout != "ctr\n" {
		t.Fatalf("exec hostname %q", r.stdout)
	}
	// A user from the OCI process.
	ctx := context.Background()
	p, err := c.Exec(ctx, &specs.Process{Args: []string{"id", "-u"}, Cwd: "/", User: specs.User{UID: 65534, GID: 65534}}, stdio(false))
	if err != nil {
		t.Fatal(err)
	}
	if r := collect(t, p); r.stdout != "65534\n" {
		t.Fatalf("exec as nobody: %+v", r)
	}

	// 20 MiB through an exec's stdin and back, checksummed.
	data := make([]byte, 20<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>9)
	}
	p, err = c.Exec(ctx, &specs.Process{Args: []string{"cat"}, Cwd: "/"}, stdio(true))
	if err != nil {
		t.Fatal(err)
	}
	go func() { p.Stdin().Write(data); p.Stdin().Close() }()
	out, _ := io.ReadAll(p.Stdout())
	if err := p.Wait(); err != nil || !bytes.Equal(out, data) {
		t.Fatalf("20 MiB through cat: got %d bytes, equal=%v, wait %v", len(out), bytes.Equal(out, data), err)
	}
	p.Close()

	// A process that exits right after writing loses nothing.
	for i := 0; i < 20; i++ {
		if r := execIn(t, c, "sh", "-c", "seq 1 2000"); len(r.stdout) != 8893 {
			t.Fatalf("fast exit: %d bytes of output", len(r.stdout))
		}
	}
}

func TestContainerExecTTY(t *testing.T) {
	a := startContainerAgent(t)
	c, _ := a.started(t, a.spec("sleep", "100"), false)
	ctx := context.Background()
	params := &protocol.ProcessParameters{CreateStdInPipe: true, CreateStdOutPipe: true, ConsoleSize: []uint16{30, 100}}
	p, err := c.Exec(ctx, &specs.Process{Terminal: true, Args: []string{"sh", "-c", "stty size; read x; stty size"}, Cwd: "/"}, params)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := p.Stdout().Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				close(done)
				return
			}
		}
	}()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return strings.Contains(out.String(), "30 100") })
	if err := p.ResizeConsole(ctx, 50, 132); err != nil {
		t.Fatal(err)
	}
	p.Stdin().Write([]byte("\n"))
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	<-done
	if !strings.Contains(out.String(), "50 132") {
		t.Fatalf("tty output %q", out.String())
	}
}
