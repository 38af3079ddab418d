package qmp

import (
	"bufio"
	"encoding/json"
	"net"
	"path/filepath"
	"sync"
	"testing"
)

// fakeRequest is one command the fake server received.
type fakeRequest struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

// fakeConn is the server side of one client connection.
type fakeConn struct {
	t    *testing.T
	conn net.Conn
	mu   sync.Mutex
}

func (f *fakeConn) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		f.t.Errorf("fake qmp: marshal: %v", err)
		return
	}
	f.sendRaw(string(b) + "\r\n") // QEMU ends lines with CRLF
}

func (f *fakeConn) sendRaw(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conn.Write([]byte(s))
}

func (f *fakeConn) reply(req fakeRequest, ret any) {
	f.send(map[string]any{"return": ret, "id": req.ID})
}

func (f *fakeConn) fail(req fakeRequest, class, desc string) {
	f.send(map[string]any{"error": map[string]string{"class": class, "desc": desc}, "id": req.ID})
}

func (f *fakeConn) event(name string, data any) {
	f.send(map[string]any{
		"event":     name,
		"data":      data,
		"timestamp": map[string]int64{"seconds": 1700000000, "microseconds": 5},
	})
}

// fakeServer is a QMP server on a unix socket: it greets, answers
// qmp_capabilities, and hands every other request to handle on the
// connection's read goroutine.
type fakeServer struct {
	path  string
	conns chan *fakeConn
}

func startFake(t *testing.T, handle func(*fakeConn, fakeRequest)) *fakeServer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{path: path, conns: make(chan *fakeConn, 4)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			fc := &fakeConn{t: t, conn: conn}
			s.conns <- fc
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				fc.sendRaw(`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian fake"}, "capabilities": ["oob"]}}` + "\r\n")
				sc := bufio.NewScanner(conn)
				negotiated := false
				for sc.Scan() {
					var req fakeRequest
					if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
						t.Errorf("fake qmp: bad request %q: %v", sc.Bytes(), err)
						return
					}
					switch {
					case req.Execute == "qmp_capabilities":
						negotiated = true
						fc.reply(req, struct{}{})
					case !negotiated:
						fc.fail(req, "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
					case handle == nil:
						fc.fail(req, "CommandNotFound", "The command "+req.Execute+" has not been found")
					default:
						handle(fc, req)
					}
				}
			}()
		}
	}()
	return s
}

// conn returns the server side of the next accepted connection.
func (s *fakeServer) conn(t *testing.T) *fakeConn {
	t.Helper()
	return <-s.conns
}
