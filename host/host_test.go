//go:build linux

package host

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/guest/bridge"
	"github.com/uvmgcs/gcs/guest/runtime"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// guest runs the real guest bridge and process runtime in this test
// process, dialing the host over unix sockets in a temp dir.
type guest struct {
	b  *bridge.Bridge
	gc *GuestConnection
}

func startGuest(t *testing.T) *guest { return startGuestWith(t, nil) }

// startGuestWith is startGuest with res serving the utility VM's
// ModifySettings.
func startGuestWith(t *testing.T, res bridge.Resources) *guest {
	t.Helper()
	u := transport.Unix{Dir: t.TempDir()}
	l, err := u.Listen(transport.BridgePort)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	reaper := runtime.NewReaper()
	rctx, stopReaper := context.WithCancel(context.Background())
	go reaper.Run(rctx)
	procs := runtime.NewProcesses(u, reaper)
	mux := bridge.NewMux()
	(&bridge.UVM{Processes: procs, Resources: res}).Register(mux)
	b := bridge.New(bridge.Config{Handler: mux, Capabilities: bridge.LinuxCapabilities(false)})
	stopped := make(chan struct{})
	go func() { b.Run(ctx, u); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped; procs.Close(context.Background()); stopReaper() })

	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	gc, err := Connect(ctx, c, Config{IO: u})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gc.Close() })
	return &guest{b: b, gc: gc}
}

func TestConnectAndProcess(t *testing.T) {
	g := startGuest(t)
	if g.gc.Version() != protocol.ProtocolVersion || g.gc.Capabilities().RuntimeOsType != "Linux" {
		t.Fatalf("version %d caps %+v", g.gc.Version(), g.gc.Capabilities())
	}
	ctx := context.Background()
	p, err := g.gc.CreateProcess(ctx, &protocol.ProcessParameters{
		CommandArgs:     []string{"sh", "-c", "read x; echo got $x; exit 9"},
		CreateStdInPipe: true, CreateStdOutPipe: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Stderr() != nil {
		t.Fatal("stderr was not requested")
	}
	if _, err := p.ExitCode(); !IsInvalidState(err) {
		t.Fatalf("exit code before exit: %v", err)
	}
	io.WriteString(p.Stdin(), "it\n")
	p.Stdin().Close()
	var out bytes.Buffer
	io.Copy(&out, p.Stdout())
	// The stream closed itself at EOF; reading on still answers EOF.
	if n, err := p.Stdout().Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read after EOF: %d, %v", n, err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if code, err := p.ExitCode(); code != 9 || err != nil || out.String() != "got it\n" {
		t.Fatalf("exit %d, %v, output %q", code, err, out.String())
	}
	if err := p.Kill(ctx); err != nil {
		t.Fatalf("kill after exit must succeed: %v", err)
	}
}

func TestRPCErrors(t *testing.T) {
	g := startGuest(t)
	ctx := context.Background()
	err := g.gc.RPC(ctx, protocol.MessageType(0x10107701), &protocol.RequestBase{}, nil)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Result != protocol.HrVmcomputeUnknownMessage {
		t.Fatalf("unknown message: %v", err)
	}
	if err := g.gc.RPC(ctx, protocol.ExecuteProcess.Response(), &protocol.RequestBase{}, nil); err == nil {
		t.Fatal("sending a response type succeeded")
	}
	big := &protocol.ModifySettingsRequest{Request: protocol.ModificationRequest{
		Settings: []byte(`"` + strings.Repeat("x", protocol.HcsshimMaxFrameSize) + `"`)}}
	if err := g.gc.RPC(ctx, protocol.ModifySettings, big, nil); !errors.Is(err, protocol.HrInvalidArg) {
		t.Fatalf("oversized request: %v", err)
	}
	if _, err := g.gc.CreateProcess(ctx, &protocol.ProcessParameters{CommandArgs: []string{"/nonexistent"}}); !IsNotFound(err) {
		t.Fatalf("missing binary: %v", err)
	}
	stacks, err := g.gc.DumpStacks(ctx)
	if err != nil || !strings.Contains(stacks, "goroutine") {
		t.Fatalf("stacks %.40q, %v", stacks, err)
	}
}

func TestCancelAndClose(t *testing.T) {
	g := startGuest(t)
	p, err := g.gc.CreateProcess(context.Background(), &protocol.ProcessParameters{CommandArgs: []string{"sleep", "100"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	wait := &protocol.WaitForProcessRequest{
		RequestBase: protocol.RequestBase{ContainerID: protocol.UVMContainerID},
		ProcessID:   uint32(p.Pid()), TimeoutInMs: protocol.InfiniteWait,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := g.gc.RPC(ctx, protocol.WaitForProcess, wait, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled call: %v", err)
	}
	g.gc.Close()
	select {
	case <-p.WaitChannel():
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not end when the connection closed")
	}
	if err := p.Wait(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("wait on a closed connection: %v", err)
	}
	if err := g.gc.RPC(context.Background(), protocol.DumpStacks, &protocol.RequestBase{}, nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("call after close: %v", err)
	}
}

func TestNotifications(t *testing.T) {
	g := startGuest(t)
	// Raised before the host asks: kept for it.
	g.b.Notify(context.Background(), protocol.ContainerNotificationMessage{
		RequestBase: protocol.RequestBase{ContainerID: "c1"},
		Type:        protocol.NotificationUnexpectedExit,
	})
	select {
	case n := <-g.gc.Notifications("c1"):
		if n.Type != protocol.NotificationUnexpectedExit {
			t.Fatalf("notification %+v", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
	}
}
