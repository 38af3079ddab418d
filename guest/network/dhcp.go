package network

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"
)

// DefaultDHCPTimeout bounds one DHCP client run.
const DefaultDHCPTimeout = 30 * time.Second

// Reaper tracks the processes the agent starts, so that reaping orphans
// never takes their exit status (guest/runtime.Reaper is one).
type Reaper interface {
	Start(start func() (int, error)) (int, error)
	Untrack(pid int)
}

// dhcpClient is the DHCP client command: the configured one, else udhcpc
// from PATH, else busybox's.
func (m *Manager) dhcpClient() ([]string, error) {
	if len(m.cfg.DHCPCommand) > 0 {
		return slices.Clone(m.cfg.DHCPCommand), nil
	}
	if p, err := exec.LookPath("udhcpc"); err == nil {
		return []string{p}, nil
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		return []string{p, "udhcpc"}, nil
	}
	return nil, errors.New("no DHCP client: neither udhcpc nor busybox is on PATH")
}

// runDHCP runs the DHCP client for ifname inside the namespace at nsPath
// until it has a lease or gives up (-n -q -t 3), within DHCPTimeout.
func (m *Manager) runDHCP(ctx context.Context, nsPath, ifname string) error {
	argv, err := m.dhcpClient()
	if err != nil {
		return err
	}
	argv = append(argv, "-n", "-q", "-t", "3", "-i", ifname)
	ctx, cancel := context.WithTimeout(ctx, m.cfg.DHCPTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out := &tail{max: 4096}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second

	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	started := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it joins the namespace to fork
		// the client there, and leaves with this goroutine.
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			started <- fmt.Errorf("enter network namespace %s: %w", nsPath, err)
			return
		}
		_, err := m.start(func() (int, error) {
			if err := cmd.Start(); err != nil {
				return 0, err
			}
			return cmd.Process.Pid, nil
		})
		started <- err
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	err = cmd.Wait()
	m.untrack(cmd.Process.Pid)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("DHCP on %s: no lease within %s: %s: %w", ifname, m.cfg.DHCPTimeout, out, context.DeadlineExceeded)
	}
	return fmt.Errorf("DHCP on %s: %v: %s", ifname, err, out)
}

func (m *Manager) start(start func() (int, error)) (int, error) {
	if m.cfg.Reaper == nil {
		return start()
	}
	return m.cfg.Reaper.Start(start)
}

func (m *Manager) untrack(pid int) {
	if m.cfg.Reaper != nil {
		m.cfg.Reaper.Untrack(pid)
	}
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
