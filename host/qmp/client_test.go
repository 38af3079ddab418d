package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func dialFake(t *testing.T, s *fakeServer) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, s.path)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGreetingAndNegotiation(t *testing.T) {
	s := startFake(t, func(f *fakeConn, req fakeRequest) {
		f.reply(req, map[string]string{"status": "running"})
	})
	c := dialFake(t, s)
	g := c.Greeting()
	if g.Version.String() != "7.2.22" || g.Version.Package != "Debian fake" {
		t.Errorf("version = %+v", g.Version)
	}
	if len(g.Capabilities) != 1 || g.Capabilities[0] != "oob" {
		t.Errorf("capabilities = %v", g.Capabilities)
	}
	var st struct{ Status string }
	if err := c.Execute(testCtx(t), "query-status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Status != "running" {
		t.Errorf("status = %q", st.Status)
	}
}

// The fake answers a batch in reverse order: each caller must still get
// its own answer, which only id matching gives.
func TestConcurrentExecuteMatchesByID(t *testing.T) {
	const n = 32
	var mu sync.Mutex
	var batch []fakeRequest
	s := startFake(t, func(f *fakeConn, req fakeRequest) {
		mu.Lock()
		defer mu.Unlock()
		batch = append(batch, req)
		if len(batch) < n {
			return
		}
		for i := len(batch) - 1; i >= 0; i-- {
			f.reply(batch[i], batch[i].Arguments)
		}
		batch = nil
	})
	c := dialFake(t, s)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out struct{ N int }
			if err := c.Execute(ctx, "echo", map[string]int{"n": i}, &out); err != nil {
				t.Errorf("Execute %d: %v", i, err)
				return
			}
			if out.N != i {
				t.Errorf("caller %d got answer %d", i, out.N)
			}
		}()
	}
	wg.Wait()
}

func TestErrorAnswerIsTyped(t *testing.T) {
	s := startFake(t, func(f *fakeConn, req fakeRequest) {
		f.fail(req, "DeviceNotFound", "Device 'lun9' not found")
	})
	c := dialFake(t, s)
	err := c.Execute(testCtx(t), "device_del", map[string]string{"id": "lun9"}, nil)
	var qe *Error
	if !errors.As(err, &qe) {
		t.Fatalf("error %v (%T) is not a *qmp.Error", err, err)
	}
	if qe.Class != "DeviceNotFound" || !strings.Contains(qe.Desc, "lun9") {
		t.Errorf("error = %+v", qe)
	}
	if !strings.Contains(err.Error(), "device_del") {
		t.Errorf("error %q does not name the command", err)
	}
}

func TestArgumentsOnTheWire(t *testing.T) {
	got := make(chan fakeRequest, 2)
	s := startFake(t, func(f *fakeConn, req fakeRequest) {
		got <- req
		f.reply(req, struct{}{})
	})
	c := dialFake(t, s)
	ctx := testCtx(t)
	if err := c.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Execute(ctx, "blockdev-del", map[string]string{"node-name": "d1"}, nil); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.Execute != "stop" || r.Arguments != nil {
		t.Errorf("nil args sent as %q", r.Arguments)
	}
	if r := <-got; string(r.Arguments) != `{"node-name":"d1"}` {
		t.Errorf("args sent as %q", r.Arguments)
	}
}

func TestEventsFanOutInOrder(t *testing.T) {
	s := startFake(t, func(f *fakeConn, req fakeRequest) {
		// Events around an answer, as QEMU sends them after device_del.
		f.event("DEVICE_DELETED", map[string]string{"path": "/machine/peripheral/lun1/virtio-backend"})
		f.reply(req, struct{}{})
		f.event("DEVICE_DELETED", map[string]string{"device": "lun1", "path": "/machine/peripheral/lun1"})
		f.event("STOP", nil)
	})
	c := dialFake(t, s)
	all := c.Subscribe(nil)
	defer all.Close()
	dev := c.Subscribe(Named("DEVICE_DELETED", func(d json.RawMessage) bool {
		var v struct{ Device string }
		return json.Unmarshal(d, &v) == nil && v.Device == "lun1"
	}))
	defer dev.Close()

	ctx := testCtx(t)
	if err := c.Execute(ctx, "device_del", map[string]string{"id": "lun1"}, nil); err != nil {
		t.Fatal(err)
	}
	e, err := dev.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(e.Data), `"device":"lun1"`) {
		t.Errorf("filtered subscriber got %s %s", e.Name, e.Data)
	}
	if e.Timestamp.Unix() != 1700000000 {
		t.Errorf("timestamp = %v", e.Timestamp)
	}
	var names []string
	for range 3 {
		e, err := all.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, e.Name)
	}
	if got := strings.Join(names, ","); got != "DEVICE_DELETED,DEVICE_DELETED,STOP" {
		t.Errorf("events = %s", got)
	}
}

func TestWaitEventMatches(t *testing.T) {
	s := startFake(t, nil)
	c := dialFake(t, s)
	f := s.conn(t)
	ctx := testCtx(t)

	type result struct {
		e   Event
		err error
	}
	done := make(chan result, 1)
	go func() {
		e, err := c.WaitEvent(ctx, "DEVICE_DELETED", func(d json.RawMessage) bool {
			return strings.Contains(string(d), `"b"`)
		})
		done <- result{e, err}
	}()
	waitSubscribers(t, c, 1)
	f.event("DEVICE_DELETED", map[string]string{"device": "a"})
	f.event("RESUME", nil)
	f.event("DEVICE_DELETED", map[string]string{"device": "b"})
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if string(r.e.Data) != `{"device":"b"}` {
		t.Errorf("WaitEvent returned %s", r.e.Data)
	}
	waitSubscribers(t, c, 0) // WaitEvent unsubscribes
}

func waitSubscribers(t *testing.T, c *Client, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.subs)
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A subscriber that never reads must not hold up answers.
func TestSlowSubscriberDoesNotBlockAnswers(t *testing.T) {
	s := startFake(t, func(f *fakeConn, req fakeRequest) {
		for i := range subscriptionBuffer + 50 {
			f.event("BLOCK_JOB_READY", map[string]int{"i": i})
		}
		f.reply(req, struct{}{})
	})
	c := dialFake(t, s)
	sub := c.Subscribe(nil)
	defer sub.Close()
	if err := c.Execute(testCtx(t), "flood", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := sub.Dropped(); got != 50 {
		t.Errorf("Dropped = %d, want 50", got)
	}
	if e := <-sub.Events(); string(e.Data) != `{"i":0}` {
		t.Errorf("first kept event = %s", e.Data)
	}
}

func TestExecuteContextCancel(t *testing.T) {
	var mu sync.Mutex
	var held []fakeRequest
	s := startFake(t, func(f *fakeConn, req fakeRequest) {
		mu.Lock()
		defer mu.Unlock()
		if req.Execute == "hang" {
			held = append(held, req)
			return
		}
		for _, h := range held { // the abandoned call's late answer
			f.reply(h, struct{}{})
		}
		held = nil
		f.reply(req, "fine")
	})
	c := dialFake(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Execute(ctx, "hang", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Execute = %v, want deadline exceeded", err)
	}
	var out string
	if err := c.Execute(testCtx(t), "next", nil, &out); err != nil || out != "fine" {
		t.Fatalf("Execute after an abandoned call = %q, %v", out, err)
	}
}

func TestHangupFailsPendingAndEndsSubscriptions(t *testing.T) {
	s := startFake(t, func(f *fakeConn, req fakeRequest) {
		f.conn.Close() // as QEMU does when it exits
	})
	c := dialFake(t, s)
	sub := c.Subscribe(nil)
	err := c.Execute(testCtx(t), "anything", nil, nil)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Execute = %v, want ErrClosed", err)
	}
	if _, ok := <-sub.Events(); ok {
		t.Error("subscription still open after hang-up")
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed after hang-up")
	}
	if err := c.Execute(testCtx(t), "again", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Execute after hang-up = %v", err)
	}
	if _, ok := <-c.Subscribe(nil).Events(); ok {
		t.Error("Subscribe after hang-up returned an open subscription")
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after hang-up = %v", err)
	}
}

func TestCloseUnblocksCallers(t *testing.T) {
	s := startFake(t, func(*fakeConn, fakeRequest) {}) // never answers
	c := dialFake(t, s)
	errc := make(chan error, 1)
	go func() { errc <- c.Execute(context.Background(), "hang", nil, nil) }()
	waitPending(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("Execute = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func waitPending(t *testing.T, c *Client) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no pending call")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOversizedMessageIsRefused(t *testing.T) {
	s := startFake(t, func(f *fakeConn, req fakeRequest) {
		f.sendRaw(`{"return": "` + strings.Repeat("x", maxLine) + `"}` + "\n")
	})
	c := dialFake(t, s)
	err := c.Execute(testCtx(t), "big", nil, nil)
	if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("Execute = %v", err)
	}
}

func TestBadGreeting(t *testing.T) {
	for name, greeting := range map[string]string{
		"not json": "hello\n",
		"answer":   `{"return": {}}` + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			a, b := netPipe(t)
			go b.Write([]byte(greeting))
			if _, err := New(testCtx(t), a); err == nil || !strings.Contains(err.Error(), "greeting") {
				t.Errorf("New = %v", err)
			}
		})
	}
}

func TestGreetingTimeout(t *testing.T) {
	a, _ := netPipe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := New(ctx, a); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("New = %v, want deadline exceeded", err)
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		line string
		kind kind
		err  bool
	}{
		{`{"QMP":{"version":{"qemu":{"major":7,"minor":2,"micro":0},"package":""},"capabilities":[]}}`, kindGreeting, false},
		{`{"return":{},"id":3}`, kindAnswer, false},
		{`{"return":[]}`, kindAnswer, false},
		{`{"error":{"class":"GenericError","desc":"x"},"id":"a"}`, kindAnswer, false},
		{`{"event":"SHUTDOWN","data":{"guest":false},"timestamp":{"seconds":1,"microseconds":2}}`, kindEvent, false},
		{`{"error":{}}`, 0, true},
		{`{}`, 0, true},
		{`[1]`, 0, true},
		{`{"return":`, 0, true},
	} {
		m, err := decode([]byte(tc.line))
		if (err != nil) != tc.err {
			t.Errorf("decode(%s) error = %v", tc.line, err)
			continue
		}
		if err == nil && m.kind() != tc.kind {
			t.Errorf("decode(%s) kind = %v, want %v", tc.line, m.kind(), tc.kind)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"return":{},"id":3}`))
	f.Add([]byte(`{"event":"STOP","timestamp":{"seconds":-1,"microseconds":99999999999}}`))
	f.Add([]byte(`{"QMP":{"version":{"qemu":{}}}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := decode(line)
		if err != nil {
			return
		}
		switch m.kind() {
		case kindGreeting:
			_ = m.greeting().Version.String()
		case kindEvent:
			_ = m.event()
		case kindAnswer:
			if m.Error != nil {
				_ = m.Error.Error()
			}
		default:
			t.Fatalf("decode accepted %q as kind %v", line, m.kind())
		}
	})
}

func (k kind) String() string {
	return [...]string{"unknown", "greeting", "answer", "event"}[k]
}
