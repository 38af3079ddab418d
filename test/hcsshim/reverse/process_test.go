package reverse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/protocol"
)

// result is what a process printed and its exit code.
type result struct {
	stdout, stderr string
	code           int
}

// collect reads p's output to EOF and waits for its exit, failing (not
// hanging) after a minute: hcsshim's guest answers WaitForProcess only once
// the host has closed the streams it read to EOF.
func collect(t testing.TB, p *host.Process) result {
	t.Helper()
	var out, errOut bytes.Buffer
	var wg sync.WaitGroup
	if r := p.Stdout(); r != nil {
		wg.Go(func() { io.Copy(&out, r) })
	}
	if r := p.Stderr(); r != nil {
		wg.Go(func() { io.Copy(&errOut, r) })
	}
	select {
	case <-p.WaitChannel():
	case <-time.After(time.Minute):
		p.Close()
		t.Fatalf("process %d: no WaitForProcess answer after its output (stdout %q)", p.Pid(), out.String())
	}
	wg.Wait()
	code, err := p.ExitCode()
	if err != nil {
		t.Fatalf("process %d: %v", p.Pid(), err)
	}
	p.Close()
	return result{out.String(), errOut.String(), code}
}

func timeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// uvmProcess starts args in the utility VM with stdout and stderr pipes,
// and stdin when in.
func uvmProcess(t testing.TB, gc *host.GuestConnection, in bool, args ...string) *host.Process {
	t.Helper()
	p, err := gc.CreateProcess(timeout(t), &protocol.ProcessParameters{
		CommandArgs:      args,
		Environment:      map[string]string{"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
		WorkingDirectory: "/",
		CreateStdInPipe:  in,
		CreateStdOutPipe: true,
		CreateStdErrPipe: true,
	})
	if err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestUVMProcess(t *testing.T) {
	gc := startGuest(t).connect(t)
	r := collect(t, uvmProcess(t, gc, false, "sh", "-c", "echo out; echo err >&2; exit 3"))
	if r != (result{"out\n", "err\n", 3}) {
		t.Fatalf("got %+v", r)
	}
	// The older command-line form.
	p, err := gc.CreateProcess(timeout(t), &protocol.ProcessParameters{
		CommandLine: "echo one two", CreateStdOutPipe: true, WorkingDirectory: "/",
		Environment: map[string]string{"PATH": "/usr/bin:/bin"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := collect(t, p); r.stdout != "one two\n" || r.code != 0 {
		t.Fatalf("command line: %+v", r)
	}
}

func TestUVMStdinCloseWrite(t *testing.T) {
	gc := startGuest(t).connect(t)
	p := uvmProcess(t, gc, true, "sh", "-c", "cat; echo done")
	if _, err := io.WriteString(p.Stdin(), "hello\n"); err != nil {
		t.Fatal(err)
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	if r := collect(t, p); r.stdout != "hello\ndone\n" || r.code != 0 {
		t.Fatalf("got %+v", r)
	}
}

func TestUVMLargeStdout(t *testing.T) {
	gc := startGuest(t).connect(t)
	const size = 4 << 20
	r := collect(t, uvmProcess(t, gc, false, "sh", "-c", fmt.Sprintf("yes 0123456789abcdef | head -c %d", size)))
	want := strings.Repeat("0123456789abcdef\n", size/17+1)[:size]
	if r.code != 0 || r.stdout != want {
		t.Fatalf("code %d, %d bytes (want %d), equal %v", r.code, len(r.stdout), size, r.stdout == want)
	}
}

func TestUVMConcurrentProcesses(t *testing.T) {
	gc := startGuest(t).connect(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		p := uvmProcess(t, gc, false, "sh", "-c", fmt.Sprintf("sleep 0.2; echo %d; exit %d", i, i))
		wg.Go(func() {
			if r := collect(t, p); r.stdout != fmt.Sprintf("%d\n", i) || r.code != i {
				errs <- fmt.Errorf("process %d: %+v", i, r)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// hcsshim's guest looks SignalProcess and ResizeConsole up by container and
// has none for the utility VM: it answers VMCOMPUTE_SYSTEM_NOT_FOUND and
// the process is untouched. The library must say so, not report success.
func TestUVMSignalNotDelivered(t *testing.T) {
	gc := startGuest(t).connect(t)
	p := uvmProcess(t, gc, true, "sh", "-c", "cat; echo alive")
	for name, send := range map[string]func() error{
		"SIGTERM": func() error { return p.Signal(timeout(t), 15) },
		"kill":    func() error { return p.Kill(timeout(t)) },
		"resize":  func() error { return p.ResizeConsole(timeout(t), 30, 100) },
	} {
		err := send()
		if err == nil {
			t.Fatalf("%s of a process in the utility VM reported success", name)
		}
		if name != "resize" && (host.IsNotFound(err) || !errors.Is(err, protocol.HrNotImpl)) {
			t.Errorf("%s: %v; want E_NOTIMPL, not a not-found", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	p.CloseStdin()
	if r := collect(t, p); r.stdout != "alive\n" || r.code != 0 {
		t.Fatalf("the process was disturbed: %+v", r)
	}
	// Gone now: a signal is no error.
	if err := p.Kill(timeout(t)); err != nil {
		t.Fatalf("kill after exit: %v", err)
	}
}

func TestUVMTerminal(t *testing.T) {
	gc := startGuest(t).connect(t)
	p, err := gc.CreateProcess(timeout(t), &protocol.ProcessParameters{
		CommandArgs:      []string{"sh", "-c", "test -t 0 && test -t 1 && echo tty; exit 5"},
		Environment:      map[string]string{"PATH": "/usr/bin:/bin"},
		WorkingDirectory: "/",
		EmulateConsole:   true,
		CreateStdInPipe:  true,
		CreateStdOutPipe: true,
		ConsoleSize:      []uint16{40, 120},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := collect(t, p); r.stdout != "tty\r\n" || r.code != 5 {
		t.Fatalf("got %+v", r)
	}
}

func TestDumpStacks(t *testing.T) {
	gc := startGuest(t).connect(t)
	s, err := gc.DumpStacks(timeout(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s, "goroutine ") {
		t.Fatalf("stacks %q", s)
	}
}
