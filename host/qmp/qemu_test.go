//go:build linux

package qmp

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// startQEMU runs a machine-less QEMU with a QMP socket and returns a Client
// connected to it and a channel closed when QEMU has exited and been reaped.
// QEMU is killed and reaped when the test ends.
func startQEMU(t *testing.T) (*Client, <-chan struct{}) {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("SKIPPING real-QEMU QMP test: qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
	}
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := exec.Command(bin, "-machine", "none", "-nodefaults", "-display", "none",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		c, err := Dial(ctx, sock)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c, exited
		}
		select {
		case <-exited:
			t.Fatalf("QEMU exited before QMP answered: %v", err)
		case <-ctx.Done():
			t.Fatalf("QMP never answered: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestRealQEMU(t *testing.T) {
	c, exited := startQEMU(t)
	ctx := testCtx(t)
	if v := c.Greeting().Version; v.Major < 2 {
		t.Errorf("greeting version = %v", v)
	}

	var ver struct {
		QEMU struct{ Major, Minor int }
	}
	if err := c.Execute(ctx, "query-version", nil, &ver); err != nil {
		t.Fatal(err)
	}
	if ver.QEMU.Major != c.Greeting().Version.Major {
		t.Errorf("query-version %+v disagrees with greeting %v", ver, c.Greeting().Version)
	}

	var qe *Error
	err := c.Execute(ctx, "no-such-command", nil, nil)
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("unknown command: %v", err)
	}
	err = c.Execute(ctx, "device_del", map[string]string{"id": "nope"}, nil)
	if !errors.As(err, &qe) || qe.Class != "DeviceNotFound" {
		t.Errorf("device_del of nothing: %v", err)
	}

	stops := c.Subscribe(Named("STOP", nil))
	defer stops.Close()
	if err := c.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := stops.Next(ctx); err != nil {
		t.Errorf("no STOP event after stop: %v", err)
	}
	var st struct {
		Status  string
		Running bool
	}
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Running || st.Status != "paused" {
		t.Errorf("status after stop = %+v", st)
	}

	shutdown := c.Subscribe(Named("SHUTDOWN", nil))
	if err := c.Execute(ctx, "quit", nil, nil); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("quit: %v", err)
	}
	if _, err := shutdown.Next(ctx); err != nil {
		t.Errorf("no SHUTDOWN event after quit: %v", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("connection still open after quit")
	}
	if err := c.Execute(ctx, "query-status", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Execute after quit = %v, want ErrClosed", err)
	}
	select {
	case <-exited:
	case <-ctx.Done():
		t.Error("QEMU still running after quit")
	}
}
