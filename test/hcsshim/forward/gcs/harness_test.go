//go:build ignore

// The uvmgcs forward conformance suite: hcsshim's own host-side bridge
// (GuestConnection, Container, Process; internal/cmd for stdio) drives the
// uvmgcs agent, run in host mode over the unix transport. These files are
// copied into internal/gcs of a patched hcsshim module at test time
// (test/hcsshim/forward in the uvmgcs repository) and read their inputs
// from the environment:
//
//	UVMGCS_GCS       the agent binary (out/gcs)
//	UVMGCS_BUSYBOX   a static busybox for container root filesystems
//	UVMGCS_TESTDATA  uvmgcs's protocol/testdata (golden frames)
//	UVMGCS_RESULTS   a file each request's result is appended to
package gcs_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/Microsoft/hcsshim/internal/gcs"
	"github.com/Microsoft/hcsshim/internal/gcs/prot"
)

func mustEnv(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("$%s is not set: run this suite through uvmgcs's test/hcsshim/forward", name)
	}
	return v
}

// frame is one message as it crossed the bridge.
type frame struct {
	Type    prot.MsgType
	ID      int64
	Payload []byte
}

// wire records every frame the agent sent on any connection of the run,
// by message type, for the golden-frame comparison.
var wire struct {
	sync.Mutex
	seen map[prot.MsgType][][]byte
}

// tap is the bridge connection handed to hcsshim: it records each frame the
// agent sends as hcsshim reads it.
type tap struct {
	net.Conn
	mu     sync.Mutex
	buf    []byte
	frames []frame
}

func (c *tap) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.mu.Lock()
		c.buf = append(c.buf, b[:n]...)
		for len(c.buf) >= prot.HdrSize {
			size := int(binary.LittleEndian.Uint32(c.buf[prot.HdrOffSize:]))
			if size < prot.HdrSize || len(c.buf) < size {
				break
			}
			f := frame{
				Type:    prot.MsgType(binary.LittleEndian.Uint32(c.buf[prot.HdrOffType:])),
				ID:      int64(binary.LittleEndian.Uint64(c.buf[prot.HdrOffID:])),
				Payload: append([]byte(nil), c.buf[prot.HdrSize:size]...),
			}
			c.frames = append(c.frames, f)
			c.buf = c.buf[size:]
			wire.Lock()
			if wire.seen == nil {
				wire.seen = make(map[prot.MsgType][][]byte)
			}
			wire.seen[f.Type] = append(wire.seen[f.Type], f.Payload)
			wire.Unlock()
		}
		c.mu.Unlock()
	}
	return n, err
}

// notifications are the container notifications received so far.
func (c *tap) notifications(t testing.TB) []prot.ContainerNotification {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []prot.ContainerNotification
	for _, f := range c.frames {
		if f.Type&prot.MsgTypeMask != prot.MsgTypeNotify {
			continue
		}
		var n prot.ContainerNotification
		n.ResultInfo.Value = &json.RawMessage{}
		if err := json.Unmarshal(f.Payload, &n); err != nil {
			t.Fatalf("notification %s: %v", f.Payload, err)
		}
		out = append(out, n)
	}
	return out
}

// agent is one uvmgcs agent in host mode and hcsshim's connection to it.
type agent struct {
	t      testing.TB
	dir    string // the unix transport's socket directory
	state  string // the agent's state root
	cgroup string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	exited chan struct{}
	tap    *tap
	gc     *gcs.GuestConnection
}

var agentSeq int

// startAgent runs the agent in a private mount namespace (nothing it
// mounts reaches this host) with its own state root and cgroup parent, and
// connects hcsshim's GuestConnection to it with a unix-socket IoListen.
func startAgent(t *testing.T) *agent {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the forward suite needs root (the agent runs containers)")
	}
	bin := mustEnv(t, "UVMGCS_GCS")
	dir, err := os.MkdirTemp("", "hcsfwd-")
	if err != nil {
		t.Fatal(err)
	}
	agentSeq++
	a := &agent{
		t: t, dir: dir, state: filepath.Join(dir, "state"), log: new(bytes.Buffer), exited: make(chan struct{}),
		cgroup: fmt.Sprintf("/hcsfwd-%d-%d", os.Getpid(), agentSeq),
	}
	l, err := net.Listen("unix", a.sock(prot.LinuxGcsVsockPort))
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command(bin, "-transport", "unix:"+dir, "-state-root", a.state, "-cgroup-parent", a.cgroup,
		"-loglevel", "debug", "-network-link-timeout", "1s")
	a.cmd.Stderr = &lockedWriter{w: a.log}
	// A private mount namespace (nothing the agent mounts reaches this
	// host) and network namespace (the "utility VM's" network, where the
	// suite adds the NICs hcsshim would hot-add).
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		l.Close()
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(a.stop)

	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	var conn net.Conn
	select {
	case conn = <-accepted:
	case <-a.exited:
		t.Fatalf("agent exited before connecting:\n%s", a.log)
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not connect:\n%s", a.log)
	}
	l.Close()
	a.tap = &tap{Conn: conn}
	logger := logrus.New()
	logger.SetOutput(&lockedWriter{w: a.log})
	logger.SetLevel(logrus.DebugLevel)
	cfg := gcs.GuestConnectionConfig{
		Conn:     a.tap,
		Log:      logrus.NewEntry(logger).WithField("side", "hcsshim"),
		IoListen: func(port uint32) (net.Listener, error) { return net.Listen("unix", a.sock(port)) },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a.gc, err = cfg.Connect(ctx, true)
	if err != nil {
		t.Fatalf("hcsshim Connect: %v\n%s", err, a.log)
	}
	return a
}

func (a *agent) sock(port uint32) string { return filepath.Join(a.dir, fmt.Sprintf("%08x", port)) }

// alive fails the test when hcsshim's bridge has terminated: a response or
// notification it could not decode ends it.
func (a *agent) alive(t testing.TB) {
	t.Helper()
	if done, err := gcs.BridgeTerminated(a.gc); done {
		t.Fatalf("hcsshim's bridge terminated: %v\nagent log:\n%s", err, a.log)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := a.gc.DumpStacks(ctx); err != nil {
		t.Fatalf("agent stopped serving: %v\nagent log:\n%s", err, a.log)
	}
}

func (a *agent) stop() {
	if a.gc != nil {
		if done, err := gcs.BridgeTerminated(a.gc); done && err != nil {
			a.t.Errorf("hcsshim's bridge terminated with an error: %v", err)
		}
		a.gc.Close()
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		a.t.Errorf("agent ignored SIGTERM")
	}
	syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	<-a.exited
	if a.t.Failed() {
		a.t.Logf("agent and hcsshim log:\n%s", a.log)
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + a.cgroup)
	if d := "/sys/fs/cgroup" + a.cgroup; exists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.IsDir() {
				a.t.Errorf("cgroup %s/%s left behind", d, e.Name())
				os.Remove(filepath.Join(d, e.Name()))
			}
		}
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			a.t.Errorf("remove cgroup %s: %v", d, err)
		}
	}
	os.RemoveAll(a.dir)
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// result records what one hcsshim request got, for the suite's table.
func result(t testing.TB, request, outcome string) {
	t.Helper()
	t.Logf("RESULT %s | %s", request, outcome)
	p := os.Getenv("UVMGCS_RESULTS")
	if p == "" {
		return
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s\t%s\n", request, outcome)
}

func hresult(err error) uint32 { return gcs.HResult(err) }

// cleanError checks err is an RPC failure with HRESULT want whose message
// holds msg, and that the agent keeps serving.
func (a *agent) cleanError(t testing.TB, request string, err error, want uint32, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded; want HRESULT 0x%08x", request, want)
	}
	if got := hresult(err); got != want || !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: %v (HRESULT 0x%08x); want 0x%08x and %q", request, err, got, want, msg)
	}
	a.alive(t)
	result(t, request, fmt.Sprintf("clean error 0x%08x (%s); agent keeps serving", want, msg))
}

// syncBuf is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func hex(hr uint32) string { return fmt.Sprintf("0x%08x", hr) }

// testLog is a logrus entry writing to the test's log.
func testLog(t testing.TB) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}
