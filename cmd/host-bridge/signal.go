package main

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/protocol"
)

// killMain sends a signal (SIGTERM by default) to a container's init.
func killMain(args []string) (int, error) {
	f := newCmdFlags("kill")
	pos, err := f.parse(args, 1, 2)
	if err != nil {
		return 2, err
	}
	sig := unix.SIGTERM
	if len(pos) == 2 {
		if sig, err = parseSignal(pos[1]); err != nil {
			return 2, usageError{err}
		}
	}
	s, err := f.connect()
	if err != nil {
		return 1, err
	}
	defer s.close()
	c, st, err := s.open(pos[0])
	if err != nil {
		return 1, err
	}
	if (st.Status != protocol.StatusRunning && st.Status != protocol.StatusPaused) || st.Pid == 0 {
		return 1, fmt.Errorf("kill %q: container is %s, not running", c.ID(), st.Status)
	}
	err = s.gc.RPC(s.ctx, protocol.SignalProcess, &protocol.SignalProcessRequest{
		RequestBase: protocol.RequestBase{ContainerID: c.ID()},
		ProcessID:   uint32(st.Pid),
		Options:     &protocol.SignalProcessOptions{Signal: int32(sig)},
	}, nil)
	if host.IsNotFound(err) {
		return 1, fmt.Errorf("kill %q: the init has exited: %w", c.ID(), err)
	}
	if err != nil {
		return 1, fmt.Errorf("kill %q: %w", c.ID(), err)
	}
	return 0, nil
}

// parseSignal parses a signal number or name: 9, KILL, SIGKILL, kill.
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return 0, fmt.Errorf("signal %d: want 1-64", n)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
