//go:build linux

package qemu

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
)

// consoleWatcher is a ConsoleLog that tests can wait on.
type consoleWatcher struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newConsoleWatcher() *consoleWatcher { return &consoleWatcher{changed: make(chan struct{})} }

func (w *consoleWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	close(w.changed)
	w.changed = make(chan struct{})
	return len(p), nil
}

func (w *consoleWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// lastLine returns the last complete line starting with prefix.
func (w *consoleWatcher) lastLine(prefix string) string {
	lines := strings.Split(w.String(), "\n")
	for i := len(lines) - 2; i >= 0; i-- {
		if l := strings.TrimRight(lines[i], "\r"); strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// waitFor waits until cond holds for the console.
func (w *consoleWatcher) waitFor(ctx context.Context, t *testing.T, what string, cond func(*consoleWatcher) bool) {
	t.Helper()
	for {
		w.mu.Lock()
		ch := w.changed
		w.mu.Unlock()
		if cond(w) {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("console never showed %s; console so far:\n%s", what, w.String())
		}
	}
}

func TestStreamConsole(t *testing.T) {
	long := strings.Repeat("x", maxConsoleLine+10)
	in := "first\r\n" + long + "\nlast without newline"
	var file, copyTo bytes.Buffer
	logger := logrus.New()
	logger.SetLevel(logrus.DebugLevel)
	var logged bytes.Buffer
	logger.SetOutput(&logged)
	streamConsole(strings.NewReader(in), &file, &copyTo, logrus.NewEntry(logger))
	if file.String() != in || copyTo.String() != in {
		t.Errorf("file %d bytes, copy %d bytes, want %d", file.Len(), copyTo.Len(), len(in))
	}
	if !strings.Contains(logged.String(), `msg=first`) || !strings.Contains(logged.String(), "last without newline") {
		t.Errorf("debug log:\n%.300s", logged.String())
	}
}

func TestStreamConsoleSurvivesFailingCopy(t *testing.T) {
	var file bytes.Buffer
	streamConsole(strings.NewReader("a\nb\n"), &file, failingWriter{}, logrus.NewEntry(logrus.New()))
	if file.String() != "a\nb\n" {
		t.Errorf("file = %q", file.String())
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 8}
	tb.Write([]byte("0123456789"))
	tb.Write([]byte("ab"))
	if got := tb.String(); got != "456789ab" {
		t.Errorf("tail = %q", got)
	}
}
