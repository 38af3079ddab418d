package vm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/protocol"
)

type result struct {
	stdout, stderr string
	code           int
}

func run(t testing.TB, gc *host.GuestConnection, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := gc.CreateProcess(ctx, &protocol.ProcessParameters{CommandArgs: args, CreateStdOutPipe: true, CreateStdErrPipe: true})
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return collect(t, p)
}

func collect(t testing.TB, p *host.Process) result {
	t.Helper()
	defer p.Close()
	var out, errOut bytes.Buffer
	var wg sync.WaitGroup
	if r := p.Stdout(); r != nil {
		wg.Go(func() { io.Copy(&out, r) })
	}
	if r := p.Stderr(); r != nil {
		wg.Go(func() { io.Copy(&errOut, r) })
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}
	wg.Wait()
	code, err := p.ExitCode()
	if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errOut.String(), code}
}

func TestVMProcesses(t *testing.T) {
	m := shared.get(t)
	gc := m.gc()
	if gc.Version() != 4 || gc.Capabilities().RuntimeOsType != "Linux" {
		t.Fatalf("negotiated %d %+v", gc.Version(), gc.Capabilities())
	}
	if r := run(t, gc, "uname", "-s"); r.stdout != "Linux\n" || r.code != 0 {
		t.Fatalf("uname: %+v", r)
	}
	if r := run(t, gc, "sh", "-c", "echo err >&2; exit 42"); r.stderr != "err\n" || r.code != 42 {
		t.Fatalf("exit 42: %+v", r)
	}
	// The agent is PID 1's child in a real VM, with the init's mounts.
	if r := run(t, gc, "sh", "-c", "cat /proc/1/comm; grep -c ' /run ' /proc/mounts"); !strings.HasPrefix(r.stdout, "init\n1\n") {
		t.Fatalf("VM environment: %+v", r)
	}
}

// TestVMAgentBinarySealed: the VM holds one copy of the agent's binary, the
// sealed memfd the init made (the initramfs file is gone, and the agent
// made no copy of its own), and it is what the agent runs from.
func TestVMAgentBinarySealed(t *testing.T) {
	gc := shared.get(t).gc()
	// A UVM process is the agent's child.
	r := run(t, gc, "sh", "-c", `readlink /proc/$PPID/exe; test -e /bin/gcs && echo present || echo removed; grep -c runc_cloned /proc/$PPID/maps`)
	if want := "/memfd:gcs (deleted)\nremoved\n0\n"; r.stdout != want {
		t.Fatalf("agent binary: %q (stderr %q), want %q", r.stdout, r.stderr, want)
	}
}

func TestVMSignal(t *testing.T) {
	gc := shared.get(t).gc()
	ctx := context.Background()
	p, err := gc.CreateProcess(ctx, &protocol.ProcessParameters{CommandArgs: []string{"sleep", "100"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(ctx, 15); err != nil {
		t.Fatal(err)
	}
	if r := collect(t, p); r.code != 143 {
		t.Fatalf("SIGTERM: exit %d", r.code)
	}
}

func TestVMStdio20MiB(t *testing.T) {
	gc := shared.get(t).gc()
	data := make([]byte, 20<<20)
	for i := range data {
		data[i] = byte(i*31 + i>>11)
	}
	want := sha256.Sum256(data)
	ctx := context.Background()
	p, err := gc.CreateProcess(ctx, &protocol.ProcessParameters{CommandArgs: []string{"cat"}, CreateStdInPipe: true, CreateStdOutPipe: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go func() { p.Stdin().Write(data); p.Stdin().Close() }()
	h := sha256.New()
	n, _ := io.Copy(h, p.Stdout())
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("20 MiB through cat in the VM: %d bytes, checksum match %v", n, bytes.Equal(h.Sum(nil), want[:]))
	}
}

// TestVMAgentCrash: when the agent dies, pending host calls fail promptly
// and the VM powers itself off.
func TestVMAgentCrash(t *testing.T) {
	m := boot(t, "")
	defer m.close()
	gc := m.gc()
	ctx := context.Background()
	p, err := gc.CreateProcess(ctx, &protocol.ProcessParameters{CommandArgs: []string{"sleep", "100"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := gc.CreateProcess(ctx, &protocol.ProcessParameters{CommandArgs: []string{"sh", "-c", "kill -9 $PPID"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.WaitChannel():
	case <-time.After(30 * time.Second):
		t.Fatal("a pending wait did not fail after the agent died")
	}
	if err := p.Wait(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("pending wait: %v, want net.ErrClosed", err)
	}
	select {
	case <-m.m.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("the VM did not power off after its agent died\nconsole:\n%s", m.console)
	}
}

func TestVMMissingKernel(t *testing.T) {
	if why := missing(); why != "" {
		t.Skip("SKIP (loud): " + why)
	}
	_, initrd := bootFiles()
	q := qemuNew("/nonexistent/vmlinux", initrd)
	err := q.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/vmlinux") {
		t.Fatalf("missing kernel: %v", err)
	}
	q.Shutdown(context.Background())
}
