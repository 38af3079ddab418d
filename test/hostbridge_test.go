package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"
)

// hbHostname is the hostname of the containers host-bridge runs.
const hbHostname = "hb-ctr"

// bridgeEnv is a gcs agent running on its own (dialing a socket directory)
// and a host-bridge binary to drive it with.
type bridgeEnv struct {
	bin     string // host-bridge
	sockDir string
	root    string
}

// syncBuffer is a bytes.Buffer safe for the agent's writes and our reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startBridgeEnv builds host-bridge and starts gcs dialing a fresh socket
// directory; the agent is stopped (its containers with it) at cleanup.
func startBridgeEnv(t *testing.T) *bridgeEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): host-bridge container verbs need root")
	}
	if _, err := os.Stat(busybox); err != nil {
		t.Fatalf("%s is missing (apt-get install busybox-static; `make deps` does): %v", busybox, err)
	}
	bin := filepath.Join(t.TempDir(), "host-bridge")
	build := exec.Command("go", "build", "-o", bin, "github.com/uvmgcs/gcs/cmd/host-bridge")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build host-bridge: %v\n%s", err, out)
	}
	state := t.TempDir()
	// Unix socket paths are short: not under the test's temp dir.
	sockDir, err := os.MkdirTemp("", "hb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	cg := fmt.Sprintf("/gcs-hb-test-%d", os.Getpid())
	t.Cleanup(func() { removeCgroupTree(t, cg) })

	logs := &syncBuffer{}
	cmd := exec.Command(gcsBinary, "-transport", "unix:"+sockDir, "-state-root", state, "-cgroup-parent", cg)
	cmd.Stderr = logs
	if testing.Verbose() && os.Getenv("GCS_TEST_AGENT_LOG") == "1" {
		cmd.Stderr = os.Stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// SIGTERM: the agent kills and deletes its containers on the way out.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			t.Errorf("agent did not exit on SIGTERM; killing it")
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	return &bridgeEnv{bin: bin, sockDir: sockDir, root: state}
}

// bundle makes a bundle inside the state root: a busybox rootfs/ and a
// config.json running args.
func (e *bridgeEnv) bundle(t *testing.T, name string, args ...string) string {
	t.Helper()
	dir := filepath.Join(e.root, "bundles", name)
	buildBusyboxRootfs(t, filepath.Join(dir, "rootfs"))
	s := specconv.Example()
	s.Root.Path = "rootfs"
	s.Process.Terminal = false
	s.Process.Args = args
	s.Hostname = hbHostname
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// hb runs `host-bridge verb --socket-dir DIR args...` and returns what it
// printed and its exit code.
func (e *bridgeEnv) hb(t *testing.T, verb string, args ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append([]string{verb, "--socket-dir", e.sockDir, "--connect-timeout", "20s"}, args...)
	cmd := exec.CommandContext(ctx, e.bin, argv...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("host-bridge %s: %v", strings.Join(argv, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("host-bridge %s: timed out", strings.Join(argv, " "))
	}
	return runResult{out.String(), errOut.String(), code}
}

// ok runs a verb that must succeed and returns its stdout.
func (e *bridgeEnv) ok(t *testing.T, verb string, args ...string) string {
	t.Helper()
	r := e.hb(t, verb, args...)
	if r.code != 0 {
		t.Fatalf("host-bridge %s %v: exit %d, stderr %q", verb, args, r.code, r.stderr)
	}
	return r.stdout
}

// hbState is what `host-bridge state` prints.
type hbState struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
	Bundle string `json:"bundle"`
	Rootfs string `json:"rootfs"`
}

func (e *bridgeEnv) state(t *testing.T, id string) hbState {
	t.Helper()
	var st hbState
	if err := json.Unmarshal([]byte(e.ok(t, "state", id)), &st); err != nil {
		t.Fatalf("state %s: %v", id, err)
	}
	if st.ID != id {
		t.Fatalf("state %s: id %q", id, st.ID)
	}
	return st
}

// waitStatus polls the container's state until it is want.
func (e *bridgeEnv) waitStatus(t *testing.T, id, want string) hbState {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := e.state(t, id)
		if st.Status == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, want %s", id, st.Status, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gone checks that id no longer exists.
func (e *bridgeEnv) gone(t *testing.T, id string) {
	t.Helper()
	if r := e.hb(t, "state", id); r.code == 0 {
		t.Fatalf("state %s after delete: exit 0 (%s)", id, r.stdout)
	}
}

func TestHostBridge(t *testing.T) {
	e := startBridgeEnv(t)

	t.Run("RunAttached", func(t *testing.T) {
		r := e.hb(t, "run", "--bundle", e.bundle(t, "echo", "echo", "hi"), "echo")
		if r.code != 0 || r.stdout != "hi\n" {
			t.Fatalf("run echo: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		e.gone(t, "echo") // attached run deletes its container
	})

	t.Run("RunExitCode", func(t *testing.T) {
		r := e.hb(t, "run", "--bundle", e.bundle(t, "exit3", "sh", "-c", "exit 3"), "exit3")
		if r.code != 3 {
			t.Fatalf("run exit 3: exit %d, stderr %q", r.code, r.stderr)
		}
		e.gone(t, "exit3")
	})

	t.Run("Lifecycle", func(t *testing.T) {
		const id = "life"
		e.ok(t, "run", "-d", "--bundle", e.bundle(t, id, "sleep", "100"), id)
		st := e.state(t, id)
		if st.Status != "running" || st.Pid <= 0 {
			t.Fatalf("state after run -d: %+v", st)
		}
		if !strings.HasPrefix(st.Rootfs, e.root) {
			t.Errorf("rootfs %q is not inside the state root", st.Rootfs)
		}
		if pids := strings.Fields(e.ok(t, "ps", id)); !slices.Contains(pids, strconv.Itoa(st.Pid)) {
			t.Errorf("ps %v does not list the init %d", pids, st.Pid)
		}
		if out := e.ok(t, "exec", "--container", id, "--", "hostname"); out != hbHostname+"\n" {
			t.Errorf("exec hostname: %q", out)
		}
		e.ok(t, "pause", id)
		if st := e.state(t, id); st.Status != "paused" {
			t.Errorf("after pause: %s", st.Status)
		}
		e.ok(t, "resume", id)
		if st := e.state(t, id); st.Status != "running" {
			t.Errorf("after resume: %s", st.Status)
		}
		if !listed(e.ok(t, "list"), id, "running") {
			t.Errorf("list does not show %s running", id)
		}
		e.ok(t, "kill", id, "KILL")
		e.waitStatus(t, id, "stopped")
		e.ok(t, "delete", id)
		e.gone(t, id)
	})

	t.Run("CreateStart", func(t *testing.T) {
		const id = "cs"
		e.ok(t, "create", "--bundle", e.bundle(t, id, "sh", "-c", "echo started; echo err >&2; exit 5"), id)
		if st := e.state(t, id); st.Status != "created" || st.Pid != 0 {
			t.Fatalf("state after create: %+v", st)
		}
		r := e.hb(t, "start", id)
		if r.code != 5 || r.stdout != "started\n" || r.stderr != "err\n" {
			t.Fatalf("start: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		e.waitStatus(t, id, "stopped") // start, unlike run, keeps it
		e.ok(t, "delete", id)
		e.gone(t, id)
	})

	t.Run("DeleteForce", func(t *testing.T) {
		const id = "df"
		e.ok(t, "create", "--bundle", e.bundle(t, id, "sleep", "100"), id)
		e.ok(t, "start", "-d", id)
		e.waitStatus(t, id, "running")
		if r := e.hb(t, "delete", id); r.code == 0 {
			t.Fatal("delete of a running container succeeded without -f")
		}
		e.ok(t, "delete", "-f", id)
		e.gone(t, id)
		if r := e.hb(t, "list", "-q"); r.code != 0 || r.stdout != "" {
			t.Fatalf("list -q after every delete: exit %d, %q", r.code, r.stdout)
		}
	})
}

// listed reports whether `host-bridge list` output has a row for id with
// status.
func listed(out, id, status string) bool {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "ID") {
		return false
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == id && f[2] == status {
			return true
		}
	}
	return false
}
