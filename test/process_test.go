package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
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

// runResult is what a finished process produced.
type runResult struct {
	stdout, stderr string
	code           int
}

func params(args ...string) *protocol.ProcessParameters {
	return &protocol.ProcessParameters{
		CommandArgs:      args,
		Environment:      map[string]string{"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
		CreateStdOutPipe: true,
		CreateStdErrPipe: true,
	}
}

// runProcess starts p, collects its output and exit code.
func runProcess(t testing.TB, gc *host.GuestConnection, p *protocol.ProcessParameters) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proc, err := gc.CreateProcess(ctx, p)
	if err != nil {
		t.Fatalf("create %v: %v", p.CommandArgs, err)
	}
	defer proc.Close()
	var out, errOut bytes.Buffer
	var wg sync.WaitGroup
	if r := proc.Stdout(); r != nil {
		wg.Go(func() { io.Copy(&out, r) })
	}
	if r := proc.Stderr(); r != nil {
		wg.Go(func() { io.Copy(&errOut, r) })
	}
	if err := proc.Wait(); err != nil {
		t.Fatalf("wait %v: %v", p.CommandArgs, err)
	}
	wg.Wait()
	code, err := proc.ExitCode()
	if err != nil {
		t.Fatalf("exit code: %v", err)
	}
	return runResult{out.String(), errOut.String(), code}
}

func TestNegotiatedCapabilities(t *testing.T) {
	a := startAgent(t)
	caps := a.gc.Capabilities()
	if a.gc.Version() != 4 || caps.RuntimeOsType != "Linux" || len(caps.SupportedSchemaVersions) != 1 ||
		caps.SupportedSchemaVersions[0] != (protocol.SchemaVersion{Major: 2, Minor: 1}) ||
		!caps.GuestDefinedCapabilities.SignalProcessSupported || !caps.GuestDefinedCapabilities.DumpStacksSupported {
		t.Fatalf("version %d capabilities %+v", a.gc.Version(), caps)
	}
	stacks, err := a.gc.DumpStacks(context.Background())
	if err != nil || !strings.Contains(stacks, "goroutine") {
		t.Fatalf("dump stacks: %v %.80q", err, stacks)
	}
}

func TestEchoAndExitCodes(t *testing.T) {
	a := startAgent(t)
	if r := runProcess(t, a.gc, params("echo", "hello")); r.stdout != "hello\n" || r.code != 0 {
		t.Fatalf("echo: %+v", r)
	}
	for _, code := range []int{0, 1, 42} {
		r := runProcess(t, a.gc, params("sh", "-c", fmt.Sprintf("echo out; echo err >&2; exit %d", code)))
		if r.code != code || r.stdout != "out\n" || r.stderr != "err\n" {
			t.Errorf("exit %d: %+v", code, r)
		}
	}
	p := params()
	p.CommandLine = `sh -c "exit 7"`
	if r := runProcess(t, a.gc, p); r.code != 7 {
		t.Errorf("CommandLine: %+v", r)
	}
}

func TestSignals(t *testing.T) {
	a := startAgent(t)
	ctx := context.Background()
	for _, tc := range []struct {
		sig  int
		want int
	}{{15, 143}, {0, 137}, {9, 137}} {
		proc, err := a.gc.CreateProcess(ctx, params("sleep", "100"))
		if err != nil {
			t.Fatal(err)
		}
		if err := proc.Signal(ctx, tc.sig); err != nil {
			t.Fatalf("signal %d: %v", tc.sig, err)
		}
		if err := proc.Wait(); err != nil {
			t.Fatal(err)
		}
		if code, _ := proc.ExitCode(); code != tc.want {
			t.Errorf("signal %d: exit %d, want %d", tc.sig, code, tc.want)
		}
		// Signalling a process that is gone is not an error in teardown.
		if err := proc.Kill(ctx); err != nil {
			t.Errorf("kill after exit: %v", err)
		}
		proc.Close()
	}
}

func TestStdinChecksum20MiB(t *testing.T) {
	a := startAgent(t)
	p := params("sha256sum")
	p.CreateStdInPipe = true
	ctx := context.Background()
	proc, err := a.gc.CreateProcess(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	data := make([]byte, 20<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	go func() {
		proc.Stdin().Write(data)
		proc.Stdin().Close()
	}()
	out, _ := io.ReadAll(proc.Stdout())
	if err := proc.Wait(); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%x  -\n", sum); string(out) != want {
		t.Fatalf("guest sha256 %q, want %q", out, want)
	}

	// And the same bytes back through cat.
	p = params("cat")
	p.CreateStdInPipe = true
	proc, err = a.gc.CreateProcess(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	go func() {
		proc.Stdin().Write(data)
		proc.Stdin().Close()
	}()
	h := sha256.New()
	n, _ := io.Copy(h, proc.Stdout())
	proc.Wait()
	if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatalf("cat returned %d bytes, checksum mismatch", n)
	}
}

// TestFastExitLosesNoOutput: a process that writes and exits at once still
// delivers every byte before its exit code is reported.
func TestFastExitLosesNoOutput(t *testing.T) {
	a := startAgent(t)
	for i := range 20 {
		r := runProcess(t, a.gc, params("sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; echo; exit 3"))
		if r.code != 3 || len(r.stdout) != 300001 {
			t.Fatalf("run %d: exit %d, %d bytes", i, r.code, len(r.stdout))
		}
	}
}

func TestTTYResize(t *testing.T) {
	a := startAgent(t)
	p := params("sh", "-c", "stty size; read x; stty size")
	p.EmulateConsole, p.CreateStdInPipe, p.CreateStdErrPipe = true, true, false
	p.ConsoleSize = []uint16{30, 100}
	ctx := context.Background()
	proc, err := a.gc.CreateProcess(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := proc.Stdout().Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return strings.Contains(out.String(), "30 100") })
	if err := proc.ResizeConsole(ctx, 50, 132); err != nil {
		t.Fatal(err)
	}
	proc.Stdin().Write([]byte("\n"))
	if err := proc.Wait(); err != nil {
		t.Fatal(err)
	}
	<-done
	if !strings.Contains(out.String(), "50 132") {
		t.Fatalf("terminal output %q lacks the new size", out.String())
	}
}

func TestWaitTimeout(t *testing.T) {
	a := startAgent(t)
	ctx := context.Background()
	proc, err := a.gc.CreateProcess(ctx, params("sleep", "100"))
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	err = a.gc.RPC(ctx, protocol.WaitForProcess, &protocol.WaitForProcessRequest{
		RequestBase: protocol.RequestBase{ContainerID: protocol.UVMContainerID},
		ProcessID:   uint32(proc.Pid()), TimeoutInMs: 100,
	}, &protocol.WaitForProcessResponse{})
	if !errors.Is(err, protocol.HrVmcomputeTimeout) || !host.IsTimeout(err) {
		t.Fatalf("wait with timeout: %v", err)
	}
	proc.Kill(ctx)
	if err := proc.Wait(); err != nil {
		t.Fatal(err)
	}
	if code, _ := proc.ExitCode(); code != 137 {
		t.Fatalf("exit %d after the timed-out wait", code)
	}
}

func TestConcurrentProcesses(t *testing.T) {
	a := startAgent(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			r := runProcess(t, a.gc, params("sh", "-c", fmt.Sprintf("echo proc-%d; exit %d", i, i%256)))
			if r.stdout != fmt.Sprintf("proc-%d\n", i) || r.code != i%256 {
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

func TestBadProcessRequests(t *testing.T) {
	a := startAgent(t)
	ctx := context.Background()
	if _, err := a.gc.CreateProcess(ctx, params("/no/such/binary")); !host.IsNotFound(err) {
		t.Errorf("missing binary: %v", err)
	}
	if _, err := a.gc.CreateProcess(ctx, params()); !errors.Is(err, protocol.HrInvalidArg) {
		t.Errorf("empty command: %v", err)
	}
	err := a.gc.RPC(ctx, protocol.SignalProcess, &protocol.SignalProcessRequest{
		RequestBase: protocol.RequestBase{ContainerID: protocol.UVMContainerID}, ProcessID: 999999,
	}, nil)
	if !host.IsNotFound(err) {
		t.Errorf("signal unknown pid: %v", err)
	}
	if r := runProcess(t, a.gc, params("true")); r.code != 0 {
		t.Errorf("agent not serving after bad requests: %+v", r)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
