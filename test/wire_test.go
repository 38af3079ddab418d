package test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/protocol"
)

// wireClient drives the agent with hand-made frames: it knows the wire
// format and nothing of the host library.
type wireClient struct {
	t    *testing.T
	conn net.Conn
	r    *protocol.Reader
	id   uint64
}

func (w *wireClient) write(frame []byte) {
	w.t.Helper()
	if _, err := w.conn.Write(frame); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

func (w *wireClient) request(typ protocol.MessageType, body string) uint64 {
	w.id++
	w.write(protocol.AppendFrame(nil, typ, w.id, []byte(body+"\n")))
	return w.id
}

func (w *wireClient) response(id uint64) (protocol.HResult, string) {
	w.t.Helper()
	w.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	hdr, p, err := w.r.Next()
	if err != nil {
		w.t.Fatalf("read response to %d: %v", id, err)
	}
	if hdr.ID != id || hdr.Type.Kind() != protocol.KindResponse {
		w.t.Fatalf("got %+v for request %d", hdr, id)
	}
	var rb protocol.ResponseBase
	if err := json.Unmarshal(p, &rb); err != nil {
		w.t.Fatalf("response %q: %v", p, err)
	}
	return protocol.HResult(rb.Result), string(p)
}

func (w *wireClient) call(typ protocol.MessageType, body string) (protocol.HResult, string) {
	w.t.Helper()
	return w.response(w.request(typ, body))
}

func acceptWire(t *testing.T, ctx context.Context, a interface {
	Accept(context.Context) (net.Conn, error)
}) *wireClient {
	t.Helper()
	c, err := a.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &wireClient{t: t, conn: c, r: protocol.NewReader(c, 0)}
}

// TestMalformedFrames sends each kind of bad input and expects its HRESULT
// while the agent keeps serving; the unsynchronisable ones cost only the
// connection, which the agent redials.
func TestMalformedFrames(t *testing.T) {
	a := startAgentOnly(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := acceptWire(t, ctx, a)
	const uvm = `"ContainerId":"00000000-0000-0000-0000-000000000000","ActivityId":"6d0b3d4c-0000-4000-8000-000000000001"`

	if hr, _ := w.call(protocol.DumpStacks, `{`+uvm+`}`); hr != protocol.HrNotImpl {
		t.Errorf("request before negotiate: %s", hr)
	}
	if hr, _ := w.call(protocol.NegotiateProtocol, `{`+uvm+`,"MinimumVersion":1,"MaximumVersion":3}`); hr != protocol.HrVmcomputeUnsupportedProtocol {
		t.Errorf("negotiate 1-3: %s", hr)
	}
	if hr, body := w.call(protocol.NegotiateProtocol, `{`+uvm+`,"MinimumVersion":4,"MaximumVersion":4}`); hr != 0 || !strings.Contains(body, `"Version":4`) {
		t.Fatalf("negotiate: %s %s", hr, body)
	}
	for _, tc := range []struct {
		name string
		typ  protocol.MessageType
		body string
		want protocol.HResult
	}{
		{"bad json", protocol.ExecuteProcess, `{"ContainerId":`, protocol.HrVmcomputeInvalidJSON},
		{"bad json in a string", protocol.ExecuteProcess, `{` + uvm + `,"Settings":{"ProcessParameters":"{not json"}}`, protocol.HrVmcomputeInvalidJSON},
		{"unknown type", protocol.MessageType(0x10107701), `{` + uvm + `}`, protocol.HrVmcomputeUnknownMessage},
		{"unknown container", protocol.WaitForProcess, `{"ContainerId":"nope","ProcessId":1}`, protocol.HrVmcomputeSystemNotFound},
		{"unknown process", protocol.WaitForProcess, `{` + uvm + `,"ProcessId":999999,"TimeoutInMs":10}`, protocol.HrNotFound},
	} {
		if hr, body := w.call(tc.typ, tc.body); hr != tc.want {
			t.Errorf("%s: %s (%s), want %s", tc.name, hr, body, tc.want)
		}
	}

	// Oversize: answered, skipped, and the same connection keeps serving.
	big := `{` + uvm + `,"Pad":"` + strings.Repeat("x", protocol.MaxFrameSize) + `"}`
	id := w.request(protocol.DumpStacks, big)
	if hr, _ := w.response(id); hr != protocol.HrInvalidArg {
		t.Errorf("oversize frame: %s", hr)
	}
	if hr, _ := w.call(protocol.DumpStacks, `{`+uvm+`}`); hr != 0 {
		t.Errorf("after oversize: %s", hr)
	}

	// Short: Size < 16 cannot be skipped; answered, then the connection
	// goes and the agent dials again.
	var hdr [protocol.HeaderSize]byte
	protocol.Header{Type: protocol.DumpStacks, Size: 4, ID: 77}.Encode(hdr[:])
	w.write(hdr[:])
	if hr, _ := w.response(77); hr != protocol.HrInvalidArg {
		t.Errorf("short frame: %s", hr)
	}
	w2 := acceptWire(t, ctx, a)
	if hr, _ := w2.call(protocol.DumpStacks, `{`+uvm+`}`); hr != protocol.HrNotImpl {
		t.Errorf("new connection must negotiate again: %s", hr)
	}
	if hr, _ := w2.call(protocol.NegotiateProtocol, `{`+uvm+`,"MinimumVersion":4,"MaximumVersion":4}`); hr != 0 {
		t.Fatalf("renegotiate: %s", hr)
	}
	if hr, _ := w2.call(protocol.DumpStacks, `{`+uvm+`}`); hr != 0 {
		t.Errorf("after reconnect: %s", hr)
	}
}

// TestAgentDeathFailsPendingCalls kills the agent under a waiting host and
// expects every pending call to fail promptly with net.ErrClosed.
func TestAgentDeathFailsPendingCalls(t *testing.T) {
	a := startAgent(t)
	ctx := context.Background()
	proc, err := a.gc.CreateProcess(ctx, params("sleep", "100"))
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	rpcErr := make(chan error, 1)
	go func() {
		rpcErr <- a.gc.RPC(ctx, protocol.WaitForProcess, &protocol.WaitForProcessRequest{
			RequestBase: protocol.RequestBase{ContainerID: protocol.UVMContainerID},
			ProcessID:   uint32(proc.Pid()), TimeoutInMs: protocol.InfiniteWait,
		}, &protocol.WaitForProcessResponse{})
	}()
	time.Sleep(100 * time.Millisecond) // let the wait reach the agent
	killed := time.Now()
	a.Kill()
	select {
	case err := <-rpcErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("pending RPC: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending RPC still waiting 5s after the agent died")
	}
	if err := proc.Wait(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("process wait: %v", err)
	}
	select {
	case <-a.gc.Done():
	case <-time.After(time.Second):
		t.Error("Done not closed")
	}
	if err := a.gc.RPC(ctx, protocol.DumpStacks, &protocol.RequestBase{}, nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("call after death: %v", err)
	}
	t.Logf("pending calls failed %v after the kill", time.Since(killed))
}

// TestReconnectRenegotiates drops the host's connection; the agent dials
// again and the new connection serves after a fresh negotiation.
func TestReconnectRenegotiates(t *testing.T) {
	a := startAgent(t)
	a.gc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gc, err := a.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	if r := runProcess(t, gc, params("echo", "again")); r.stdout != "again\n" {
		t.Fatalf("after reconnect: %+v", r)
	}
}
