package runtime

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

func TestParentOf(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want int
	}{
		{"12 (sh) S 7 12 12 0 -1", 7},
		{"99 (a b) c)) Z 1 99 99", 1},
	} {
		got, err := parentOf([]byte(tc.stat))
		if err != nil || got != tc.want {
			t.Errorf("parentOf(%q) = %d, %v; want %d", tc.stat, got, err, tc.want)
		}
	}
	if _, err := parentOf([]byte("12 sh S")); err == nil {
		t.Error("parentOf without a command name succeeded")
	}
}

func TestArgvAndEnv(t *testing.T) {
	args, err := Argv(&protocol.ProcessParameters{CommandLine: `sh -c "echo 'a b'" x\ y`})
	if err != nil || !reflect.DeepEqual(args, []string{"sh", "-c", "echo 'a b'", "x y"}) {
		t.Fatalf("Argv = %q, %v", args, err)
	}
	args, _ = Argv(&protocol.ProcessParameters{CommandArgs: []string{"a"}, CommandLine: "b"})
	if !reflect.DeepEqual(args, []string{"a"}) {
		t.Fatalf("CommandArgs must win: %q", args)
	}
	for _, p := range []*protocol.ProcessParameters{{}, {CommandLine: `"unterminated`}, {CommandArgs: []string{""}}} {
		if _, err := Argv(p); !errors.Is(err, protocol.HrInvalidArg) {
			t.Errorf("Argv(%+v) = %v, want E_INVALIDARG", p, err)
		}
	}
	env, err := Env(map[string]string{"B": "2", "A": "1"})
	if err != nil || !reflect.DeepEqual(env, []string{"A=1", "B=2", "PATH=" + DefaultPath}) {
		t.Fatalf("Env = %q, %v", env, err)
	}
	if _, err := Env(map[string]string{"A=B": "1"}); !errors.Is(err, protocol.HrInvalidArg) {
		t.Errorf("Env with '=' in a key: %v", err)
	}
	if err := checkSize([]string{strings.Repeat("x", maxArgSize)}, nil); !errors.Is(err, protocol.HrInvalidArg) {
		t.Errorf("oversized argv: %v", err)
	}
}

// startTracked starts cmd as a child r tracks and returns its pid.
func startTracked(t *testing.T, r *Reaper, cmd *exec.Cmd) int {
	t.Helper()
	pid, err := r.Start(func() (int, error) {
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestReaperSparesTracked: an untracked exited child is collected, a tracked
// one is left for its owner, who gets its real status.
func TestReaperSparesTracked(t *testing.T) {
	r := NewReaper()
	owned := exec.Command("sh", "-c", "exit 3")
	pid := startTracked(t, r, owned)
	orphan := exec.Command("true")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var reaped []int
	for time.Now().Before(deadline) && len(reaped) == 0 {
		reaped = r.Reap()
		time.Sleep(5 * time.Millisecond)
	}
	if !reflect.DeepEqual(reaped, []int{orphan.Process.Pid}) {
		t.Fatalf("reaped %v, want only the untracked %d (tracked %d)", reaped, orphan.Process.Pid, pid)
	}
	if err := owned.Wait(); err == nil || owned.ProcessState.ExitCode() != 3 {
		t.Fatalf("owner's wait: %v, state %v", err, owned.ProcessState)
	}
	r.Untrack(pid)
	if r.Tracked() != 0 {
		t.Fatalf("%d pids still tracked", r.Tracked())
	}
}

// runningReaper returns a reaper serving SIGCHLD until the test ends.
func runningReaper(t *testing.T) *Reaper {
	r := NewReaper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// hostEnd listens on the stdio ports as the host would.
type hostEnd struct {
	t   *testing.T
	u   transport.Unix
	ls  []net.Listener
	set protocol.VsockStdioRelaySettings
}

func newHostEnd(t *testing.T, in, out, errOut bool) *hostEnd {
	h := &hostEnd{t: t, u: transport.Unix{Dir: t.TempDir()}}
	port := transport.FirstStdioPort
	for _, s := range []struct {
		want bool
		p    *uint32
	}{{in, &h.set.StdIn}, {out, &h.set.StdOut}, {errOut, &h.set.StdErr}} {
		if !s.want {
			continue
		}
		l, err := h.u.Listen(port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		*s.p = port
		h.ls = append(h.ls, l)
		port++
	}
	return h
}

func (h *hostEnd) accept(i int) net.Conn {
	c, err := h.ls[i].Accept()
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

func TestProcessPipesAndExit(t *testing.T) {
	h := newHostEnd(t, true, true, true)
	ps := NewProcesses(h.u, runningReaper(t))
	defer ps.Close(context.Background())
	ctx := context.Background()
	pid, err := ps.Start(ctx, &protocol.ProcessParameters{
		CommandArgs: []string{"sh", "-c", "tr a-z A-Z; echo oops >&2; exit 5"},
	}, h.set)
	if err != nil {
		t.Fatal(err)
	}
	in, out, errOut := h.accept(0), h.accept(1), h.accept(2)
	io.WriteString(in, "hello\n")
	transport.CloseWrite(in)
	o, _ := io.ReadAll(out)
	e, _ := io.ReadAll(errOut)
	code, err := ps.Wait(ctx, pid)
	if err != nil || code != 5 || string(o) != "HELLO\n" || string(e) != "oops\n" {
		t.Fatalf("code %d err %v stdout %q stderr %q", code, err, o, e)
	}
	if _, err := ps.Wait(ctx, pid); !errors.Is(err, protocol.HrNotFound) {
		t.Fatalf("second wait: %v, want not found (forgotten)", err)
	}
}

func TestProcessSignalAndTimeout(t *testing.T) {
	h := newHostEnd(t, false, false, false)
	ps := NewProcesses(h.u, runningReaper(t))
	defer ps.Close(context.Background())
	pid, err := ps.Start(context.Background(), &protocol.ProcessParameters{CommandArgs: []string{"sleep", "100"}}, h.set)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := ps.Wait(ctx, pid); !errors.Is(err, protocol.HrVmcomputeTimeout) {
		t.Fatalf("wait with deadline: %v", err)
	}
	if err := ps.Signal(context.Background(), pid, int(syscall.SIGTERM)); err != nil {
		t.Fatal(err)
	}
	if code, err := ps.Wait(context.Background(), pid); err != nil || code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit %d, %v", code, err)
	}
	if err := ps.Signal(context.Background(), pid, 9); !errors.Is(err, protocol.HrNotFound) {
		t.Fatalf("signal after exit: %v", err)
	}
	if err := ps.ResizeConsole(context.Background(), 424242, 1, 1); !errors.Is(err, protocol.HrNotFound) {
		t.Fatalf("resize unknown: %v", err)
	}
	if _, err := ps.Start(context.Background(), &protocol.ProcessParameters{CommandArgs: []string{"no-such-cmd-xyz"}}, h.set); !errors.Is(err, protocol.HrNotFound) {
		t.Fatalf("missing command: %v", err)
	}
}

// TestOutputOutlivesExit: the exit waits for output a background child
// still writes, so nothing is lost.
func TestOutputOutlivesExit(t *testing.T) {
	h := newHostEnd(t, false, true, false)
	ps := NewProcesses(h.u, runningReaper(t))
	defer ps.Close(context.Background())
	pid, err := ps.Start(context.Background(), &protocol.ProcessParameters{
		CommandArgs: []string{"sh", "-c", "(sleep 0.2; echo late) & echo early"},
	}, h.set)
	if err != nil {
		t.Fatal(err)
	}
	out := h.accept(0)
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(out); done <- b }()
	if code, err := ps.Wait(context.Background(), pid); err != nil || code != 0 {
		t.Fatalf("exit %d, %v", code, err)
	}
	if b := <-done; string(b) != "early\nlate\n" {
		t.Fatalf("stdout %q", b)
	}
}

// TestReadSmallGrows: a proc file longer than the buffer is read whole.
func TestReadSmallGrows(t *testing.T) {
	p := filepath.Join(t.TempDir(), "children")
	want := strings.Repeat("1234567 ", 2000) // a subreaper with many children
	if err := os.WriteFile(p, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf [64]byte
	got, err := readSmall(p, buf[:])
	if err != nil || string(got) != want {
		t.Fatalf("read %d bytes (%v), want %d", len(got), err, len(want))
	}
}

// TestChildrenFromTasks: the per-thread children files name a running child.
func TestChildrenFromTasks(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if !slices.Contains(NewReaper().children(), cmd.Process.Pid) {
		t.Fatalf("children() misses %d", cmd.Process.Pid)
	}
}

// TestReapExited: the signal's light pass collects an exited untracked
// child and leaves an exited tracked one to its owner, its status intact.
func TestReapExited(t *testing.T) {
	if n := unsafe.Sizeof(childInfo{}); n != 128 {
		t.Fatalf("childInfo is %d bytes, siginfo_t 128", n)
	}
	r := NewReaper()
	owned := exec.Command("sh", "-c", "exit 4")
	pid := startTracked(t, r, owned)
	deadline := time.Now().Add(10 * time.Second)
	for !exited(pid) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := r.reapExited(); len(got) != 0 {
		t.Fatalf("reaped %v with only the tracked %d exited", got, pid)
	}
	if err := owned.Wait(); err == nil || owned.ProcessState.ExitCode() != 4 {
		t.Fatalf("owner's wait: %v, state %v", err, owned.ProcessState)
	}
	r.Untrack(pid)
	orphan := exec.Command("true")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	var reaped []int
	for len(reaped) == 0 && time.Now().Before(deadline) {
		reaped = r.reapExited()
		time.Sleep(time.Millisecond)
	}
	if !reflect.DeepEqual(reaped, []int{orphan.Process.Pid}) {
		t.Fatalf("reaped %v, want the untracked %d", reaped, orphan.Process.Pid)
	}
}
