package bridge

import (
	"context"
	"io"
	"os"

	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard) // handler panics and failures are expected here
	os.Exit(m.Run())
}

// rawHost speaks the wire protocol from the host's side, knowing nothing of
// this package.
type rawHost struct {
	t    *testing.T
	conn net.Conn
	r    *protocol.Reader
	id   uint64
}

func newRawHost(t *testing.T, conn net.Conn) *rawHost {
	return &rawHost{t: t, conn: conn, r: protocol.NewReader(conn, 0)}
}

func (h *rawHost) sendRaw(typ protocol.MessageType, body string) uint64 {
	h.t.Helper()
	h.id++
	if _, err := h.conn.Write(protocol.AppendFrame(nil, typ, h.id, []byte(body))); err != nil {
		h.t.Fatalf("write: %v", err)
	}
	return h.id
}

func (h *rawHost) read() (protocol.Header, protocol.ResponseBase, []byte) {
	h.t.Helper()
	h.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr, p, err := h.r.Next()
	if err != nil {
		h.t.Fatalf("read: %v", err)
	}
	var rb protocol.ResponseBase
	if err := json.Unmarshal(p, &rb); err != nil {
		h.t.Fatalf("response %q: %v", p, err)
	}
	return hdr, rb, p
}

// call sends a request and returns its response's result and body.
func (h *rawHost) call(typ protocol.MessageType, body string) (protocol.HResult, []byte) {
	h.t.Helper()
	id := h.sendRaw(typ, body)
	hdr, rb, p := h.read()
	if hdr.ID != id || hdr.Type != typ.Response() {
		h.t.Fatalf("response header %+v for request %d %s", hdr, id, typ)
	}
	return protocol.HResult(rb.Result), p
}

func (h *rawHost) negotiate() {
	h.t.Helper()
	if hr, p := h.call(protocol.NegotiateProtocol, `{"ContainerId":"","ActivityId":"a","MinimumVersion":4,"MaximumVersion":4}`); hr != 0 {
		h.t.Fatalf("negotiate: %s %s", hr, p)
	}
}

func testMux() *Mux {
	m := NewMux()
	m.HandleFunc(protocol.Start, func(ctx context.Context, req *Request) (protocol.Response, error) {
		return nil, nil
	})
	m.HandleFunc(protocol.SignalProcess, func(ctx context.Context, req *Request) (protocol.Response, error) {
		var r protocol.SignalProcessRequest
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		if r.ProcessID == 0 {
			panic("pid zero")
		}
		return nil, fmt.Errorf("process %d: %w", r.ProcessID, protocol.HrNotFound)
	})
	m.HandleFunc(protocol.DumpStacks, dumpStacks)
	return m
}

func serve(t *testing.T, b *Bridge) *rawHost {
	t.Helper()
	hostEnd, guestEnd := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Serve(ctx, guestEnd) }()
	t.Cleanup(func() { cancel(); hostEnd.Close(); <-done })
	return newRawHost(t, hostEnd)
}

func TestNegotiationGatesRequests(t *testing.T) {
	h := serve(t, New(Config{Handler: testMux(), Capabilities: LinuxCapabilities(false)}))
	if hr, _ := h.call(protocol.Start, `{"ContainerId":"c","ActivityId":"a"}`); hr != protocol.HrNotImpl {
		t.Fatalf("before negotiate: %s", hr)
	}
	hr, _ := h.call(protocol.NegotiateProtocol, `{"MinimumVersion":1,"MaximumVersion":3}`)
	if hr != protocol.HrVmcomputeUnsupportedProtocol {
		t.Fatalf("versions 1-3: %s", hr)
	}
	hr, p := h.call(protocol.NegotiateProtocol, `{"MinimumVersion":3,"MaximumVersion":5}`)
	var resp protocol.NegotiateProtocolResponse
	if err := json.Unmarshal(p, &resp); err != nil || hr != 0 || resp.Version != 4 ||
		resp.Capabilities.RuntimeOsType != "Linux" || !resp.Capabilities.GuestDefinedCapabilities.SignalProcessSupported {
		t.Fatalf("negotiate: %s %s", hr, p)
	}
	if hr, _ := h.call(protocol.Start, `{"ContainerId":"c","ActivityId":"a"}`); hr != 0 {
		t.Fatalf("after negotiate: %s", hr)
	}
}

func TestErrorsKeepServing(t *testing.T) {
	h := serve(t, New(Config{Handler: testMux()}))
	h.negotiate()
	for _, tc := range []struct {
		name string
		typ  protocol.MessageType
		body string
		want protocol.HResult
	}{
		{"bad json", protocol.Start, `{"ContainerId":`, protocol.HrVmcomputeInvalidJSON},
		{"bad field type", protocol.SignalProcess, `{"ProcessId":"x"}`, protocol.HrVmcomputeInvalidJSON},
		{"unknown type", protocol.MessageType(0x10109901), `{}`, protocol.HrVmcomputeUnknownMessage},
		{"handler error", protocol.SignalProcess, `{"ProcessId":9}`, protocol.HrNotFound},
		{"handler panic", protocol.SignalProcess, `{"ProcessId":0}`, protocol.HrFail},
		{"fine after all that", protocol.Start, `{}`, 0},
	} {
		hr, p := h.call(tc.typ, tc.body)
		if hr != tc.want {
			t.Errorf("%s: %s (%s), want %s", tc.name, hr, p, tc.want)
		}
		if hr != 0 && !strings.Contains(string(p), `"ErrorMessage"`) {
			t.Errorf("%s: no message in %s", tc.name, p)
		}
	}
}

func TestOversizeFrameSkipped(t *testing.T) {
	h := serve(t, New(Config{Handler: testMux(), MaxFrameSize: 1024}))
	h.negotiate()
	big := `{"ContainerId":"` + strings.Repeat("x", 2000) + `"}`
	if hr, _ := h.call(protocol.Start, big); hr != protocol.HrInvalidArg {
		t.Fatalf("oversize: %s", hr)
	}
	if hr, _ := h.call(protocol.Start, `{}`); hr != 0 {
		t.Fatalf("after oversize: %s", hr)
	}
}

func TestUndersizeFrameDropsConnection(t *testing.T) {
	b := New(Config{Handler: testMux()})
	hostEnd, guestEnd := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- b.Serve(context.Background(), guestEnd) }()
	h := newRawHost(t, hostEnd)
	var hdr [protocol.HeaderSize]byte
	protocol.Header{Type: protocol.Start, Size: 8, ID: 5}.Encode(hdr[:])
	go hostEnd.Write(hdr[:])
	got, rb, _ := h.read()
	if got.ID != 5 || protocol.HResult(rb.Result) != protocol.HrInvalidArg {
		t.Fatalf("undersize answer %+v %+v", got, rb)
	}
	select {
	case err := <-done:
		if !errors.Is(err, protocol.ErrFrameSize) {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve kept an unsynchronised connection")
	}
}

func TestDumpStacksFitsHcsshimBound(t *testing.T) {
	h := serve(t, New(Config{Handler: testMux()}))
	h.negotiate()
	hr, p := h.call(protocol.DumpStacks, `{}`)
	var resp protocol.DumpStacksResponse
	if err := json.Unmarshal(p, &resp); hr != 0 || err != nil || !strings.Contains(resp.GuestStacks, "goroutine") {
		t.Fatalf("dump stacks: %s %v", hr, err)
	}
	if len(p)+protocol.HeaderSize > protocol.HcsshimMaxFrameSize {
		t.Fatalf("response of %d bytes", len(p))
	}
}

func TestConcurrentRequestsAnswerEach(t *testing.T) {
	h := serve(t, New(Config{Handler: testMux(), MaxInFlight: 4}))
	h.negotiate()
	const n = 500
	go func() {
		for i := range n {
			h.sendRaw(protocol.SignalProcess, fmt.Sprintf(`{"ProcessId":%d}`, i+1))
		}
	}()
	seen := map[uint64]bool{}
	for range n {
		hdr, rb, _ := h.read()
		if protocol.HResult(rb.Result) != protocol.HrNotFound || seen[hdr.ID] {
			t.Fatalf("response %+v %+v", hdr, rb)
		}
		seen[hdr.ID] = true
	}
}

// TestNotificationsSurviveReconnect raises notifications while no host is
// connected and expects them, in order, after the next negotiation, through
// the redialing Run loop over the real unix transport.
func TestNotificationsSurviveReconnect(t *testing.T) {
	u := transport.Unix{Dir: t.TempDir()}
	b := New(Config{Handler: testMux()})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(ctx, u) })
	defer func() { cancel(); wg.Wait() }()

	b.Notify(ctx, protocol.ContainerNotificationMessage{RequestBase: protocol.RequestBase{ContainerID: "early"}, Type: protocol.NotificationUnexpectedExit})
	l, err := u.Listen(transport.BridgePort)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accept := func() *rawHost {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return newRawHost(t, c)
	}
	h := accept()
	h.negotiate()
	hdr, _, p := h.read()
	if hdr.Type != protocol.ContainerNotification || !strings.Contains(string(p), `"early"`) ||
		!strings.Contains(string(p), `"ActivityId":"`+protocol.NullActivityID+`"`) {
		t.Fatalf("first connection got %+v %s", hdr, p)
	}
	h.conn.Close()
	b.Notify(ctx, protocol.ContainerNotificationMessage{RequestBase: protocol.RequestBase{ContainerID: "while-away-1"}})
	b.Notify(ctx, protocol.ContainerNotificationMessage{RequestBase: protocol.RequestBase{ContainerID: "while-away-2"}})
	h = accept()
	h.negotiate()
	for _, want := range []string{"while-away-1", "while-away-2"} {
		hdr, _, p := h.read()
		if hdr.Type != protocol.ContainerNotification || hdr.ID != 0 || !strings.Contains(string(p), want) {
			t.Fatalf("want %s, got %+v %s", want, hdr, p)
		}
	}
}

// TestDeferredAnswer: a handler that defers answers later from another
// goroutine, once, and its request holds no in-flight slot meanwhile.
func TestDeferredAnswer(t *testing.T) {
	answers := make(chan func(protocol.Response, error), 1)
	m := testMux()
	m.HandleFunc(protocol.WaitForProcess, func(ctx context.Context, req *Request) (protocol.Response, error) {
		answers <- req.Defer()
		return nil, nil
	})
	h := serve(t, New(Config{Handler: m, MaxInFlight: 1}))
	h.negotiate()
	waitID := h.sendRaw(protocol.WaitForProcess, `{"ProcessId":7,"TimeoutInMs":4294967295}`)
	respond := <-answers
	// The only slot is free: another request is answered meanwhile.
	if hr, p := h.call(protocol.SignalProcess, `{"ProcessId":3}`); hr != protocol.HrNotFound {
		t.Fatalf("request behind a deferred one: %s %s", hr, p)
	}
	go func() {
		respond(&protocol.WaitForProcessResponse{ExitCode: 42}, nil)
		respond(nil, errors.New("a second answer")) // ignored
	}()
	hdr, rb, p := h.read()
	var resp protocol.WaitForProcessResponse
	if err := json.Unmarshal(p, &resp); err != nil || hdr.ID != waitID || rb.Result != 0 || resp.ExitCode != 42 {
		t.Fatalf("deferred answer %+v %s (%v)", hdr, p, err)
	}
	// Nothing more arrives for it: the next frame answers the next request.
	if hr, _ := h.call(protocol.SignalProcess, `{"ProcessId":4}`); hr != protocol.HrNotFound {
		t.Fatalf("after the deferred answer: %s", hr)
	}
}
