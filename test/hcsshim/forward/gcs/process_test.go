//go:build ignore

package gcs_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Microsoft/hcsshim/internal/cmd"
	"github.com/Microsoft/hcsshim/internal/cow"
	"github.com/Microsoft/hcsshim/internal/gcs"
	"github.com/Microsoft/hcsshim/internal/hcs/schema1"
	hcsschema "github.com/Microsoft/hcsshim/internal/hcs/schema2"
	"github.com/Microsoft/hcsshim/internal/protocol/guestresource"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestUvmgcsNegotiate: hcsshim's Connect negotiated version 4 and parsed
// the Linux guest's capabilities.
func TestUvmgcsNegotiate(t *testing.T) {
	a := startAgent(t)
	if a.gc.OS() != "linux" || a.gc.Protocol() != 4 {
		t.Fatalf("os %q protocol %d", a.gc.OS(), a.gc.Protocol())
	}
	caps := gcs.GetLCOWCapabilities(a.gc.Capabilities())
	if caps == nil {
		t.Fatalf("capabilities %T are not LCOW's", a.gc.Capabilities())
	}
	if !caps.IsSignalProcessSupported() || !caps.IsDumpStacksSupported() || !caps.IsDeleteContainerStateSupported() || !caps.IsNamespaceAddRequestSupported() {
		t.Fatalf("capabilities %+v", caps)
	}
	result(t, "NegotiateProtocol (v4, LCOW capabilities parsed)", "pass")
}

// run runs args in the utility VM through internal/cmd, as hcsshim's
// ExecInUvm does (hcsschema.ProcessParameters with CommandArgs).
func run(t testing.TB, host cow.ProcessHost, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	c := cmd.CommandContext(ctxT(t), host, args[0], args[1:]...)
	var out, errOut bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = stdin, &out, &errOut
	err := c.Run()
	code = c.ExitState.ExitCode()
	if err != nil && code <= 0 {
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

func TestUvmgcsUVMProcesses(t *testing.T) {
	a := startAgent(t)

	t.Run("LCOWParameters", func(t *testing.T) {
		out, errOut, code := run(t, a.gc, nil, "sh", "-c", "echo out; echo err >&2; exit 3")
		if out != "out\n" || errOut != "err\n" || code != 3 {
			t.Fatalf("stdout %q stderr %q exit %d", out, errOut, code)
		}
		result(t, "ExecuteProcess in the UVM (hcsschema.ProcessParameters, CommandArgs) + WaitForProcess", "pass")
	})

	t.Run("Schema1ProcessConfig", func(t *testing.T) {
		p, err := a.gc.CreateProcess(ctxT(t), &schema1.ProcessConfig{
			CommandLine: "sh -c 'echo schema1 $FOO'", WorkingDirectory: "/",
			Environment: map[string]string{"FOO": "bar", "PATH": "/usr/bin:/bin"}, CreateStdOutPipe: true, CreateStdErrPipe: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		_, stdout, _ := p.Stdio()
		out, _ := io.ReadAll(stdout)
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
		code, err := p.ExitCode()
		if err != nil || code != 0 || string(out) != "schema1 bar\n" {
			t.Fatalf("stdout %q exit %d %v", out, code, err)
		}
		result(t, "ExecuteProcess in the UVM (schema1.ProcessConfig, CommandLine)", "pass")
	})

	t.Run("StdinCloseWrite", func(t *testing.T) {
		in := strings.Repeat("line of input\n", 1000)
		out, _, code := run(t, a.gc, strings.NewReader(in), "sh", "-c", "cat; echo eof")
		if out != in+"eof\n" || code != 0 {
			t.Fatalf("got %d bytes, exit %d", len(out), code)
		}
		result(t, "stdin relay, CloseStdin (CloseWrite on the stdin connection)", "pass")
	})

	t.Run("Stdout4MiB", func(t *testing.T) {
		const size = 4 << 20
		out, _, code := run(t, a.gc, nil, "sh", "-c", fmt.Sprintf("yes 0123456789abcdef | head -c %d", size))
		want := strings.Repeat("0123456789abcdef\n", size/17+1)[:size]
		if code != 0 || out != want {
			t.Fatalf("exit %d, %d bytes, equal %v", code, len(out), out == want)
		}
		result(t, "4 MiB of stdout", "pass (byte-exact)")
	})

	t.Run("Concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Go(func() {
				out, _, code := run(t, a.gc, nil, "sh", "-c", fmt.Sprintf("sleep 0.1; echo %d; exit %d", i, i))
				if out != fmt.Sprintf("%d\n", i) || code != i {
					errs <- fmt.Errorf("process %d: stdout %q exit %d", i, out, code)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		result(t, "16 concurrent UVM processes", "pass")
	})

	t.Run("Signal", func(t *testing.T) {
		p, err := a.gc.CreateProcess(ctxT(t), &hcsschema.ProcessParameters{
			CommandArgs:      []string{"sh", "-c", `trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done`},
			CreateStdOutPipe: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		_, stdout, _ := p.Stdio()
		buf := make([]byte, 6)
		if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "ready\n" {
			t.Fatalf("%q %v", buf, err)
		}
		ok, err := p.Signal(ctxT(t), guestresource.SignalProcessOptionsLCOW{Signal: 15})
		if err != nil || !ok {
			t.Fatalf("Signal: delivered %v, %v", ok, err)
		}
		rest, _ := io.ReadAll(stdout)
		p.Wait()
		if code, err := p.ExitCode(); code != 7 || string(rest) != "got TERM\n" {
			t.Fatalf("exit %d %v, output %q", code, err, rest)
		}
		result(t, "SignalProcess (SIGTERM, SignalProcessOptionsLCOW)", "pass (delivered, trap ran)")
	})

	t.Run("Kill", func(t *testing.T) {
		p, err := a.gc.CreateProcess(ctxT(t), &hcsschema.ProcessParameters{CommandArgs: []string{"sleep", "100"}})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ok, err := p.Kill(ctxT(t))
		if err != nil || !ok {
			t.Fatalf("Kill: delivered %v, %v", ok, err)
		}
		p.Wait()
		if code, err := p.ExitCode(); code != 137 || err != nil {
			t.Fatalf("exit %d %v", code, err)
		}
		result(t, "SignalProcess without options (Kill)", "pass (exit 137)")
		// The process is gone: hcsshim takes 0x80070490 as "not delivered".
		ok, err = p.Kill(ctxT(t))
		if err != nil || ok {
			t.Fatalf("Kill after exit: delivered %v, %v", ok, err)
		}
		result(t, "SignalProcess to an exited process", "not found 0x80070490: hcsshim reports not delivered, no error")
	})

	t.Run("TTYResize", func(t *testing.T) {
		p, err := a.gc.CreateProcess(ctxT(t), &hcsschema.ProcessParameters{
			CommandArgs:    []string{"sh", "-c", "stty size; read x; stty size"},
			EmulateConsole: true, CreateStdInPipe: true, CreateStdOutPipe: true, ConsoleSize: []int32{24, 80},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		stdin, stdout, _ := p.Stdio()
		out := &syncBuf{}
		done := make(chan struct{})
		go func() { io.Copy(out, stdout); close(done) }()
		waitFor(t, func() bool { return strings.Contains(out.String(), "24 80") })
		if err := p.ResizeConsole(ctxT(t), 100, 40); err != nil {
			t.Fatal(err)
		}
		stdin.Write([]byte("\n"))
		p.Wait()
		<-done
		if !strings.Contains(out.String(), "40 100") {
			t.Fatalf("terminal output %q", out.String())
		}
		result(t, "ExecuteProcess with EmulateConsole (tty) + ResizeConsole", "pass (stty sees 24x80, then 40x100)")
	})

	t.Run("DumpStacks", func(t *testing.T) {
		s, err := a.gc.DumpStacks(ctxT(t))
		if err != nil || !strings.Contains(s, "goroutine") {
			t.Fatalf("%v %.200q", err, s)
		}
		result(t, "DumpStacks", "pass")
	})
}

// waitFor polls cond for up to 20 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for range 400 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("timed out")
}
