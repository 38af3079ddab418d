package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/protocol"
)

// linuxSIGTERM is SIGTERM in the guest, whatever this host numbers it.
const linuxSIGTERM = 15

// linuxSignal is the number of a Linux signal by name (without "SIG"), the
// numbering of x86 and arm64 the guest uses: the signals the agent sends
// are the guest's, not this host's, which may be Windows.
func linuxSignal(name string) (int, bool) {
	names := [...]string{
		1: "HUP", 2: "INT", 3: "QUIT", 4: "ILL", 5: "TRAP", 6: "ABRT", 7: "BUS", 8: "FPE",
		9: "KILL", 10: "USR1", 11: "SEGV", 12: "USR2", 13: "PIPE", 14: "ALRM", 15: "TERM",
		16: "STKFLT", 17: "CHLD", 18: "CONT", 19: "STOP", 20: "TSTP", 21: "TTIN", 22: "TTOU",
		23: "URG", 24: "XCPU", 25: "XFSZ", 26: "VTALRM", 27: "PROF", 28: "WINCH", 29: "IO",
		30: "PWR", 31: "SYS",
	}
	for n, s := range names {
		if s != "" && s == name {
			return n, true
		}
	}
	return 0, false
}

// killMain sends a signal (SIGTERM by default) to a container's init.
func killMain(args []string) (int, error) {
	f := newCmdFlags("kill")
	pos, err := f.parse(args, 1, 2)
	if err != nil {
		return 2, err
	}
	sig := linuxSIGTERM
	if len(pos) == 2 {
		if sig, err = parseSignal(pos[1]); err != nil {
			return 2, usageError{err}
		}
	}
	s, c, st, err := f.connectTo(pos[0])
	if err != nil {
		return 1, err
	}
	defer s.close()
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

// parseSignal parses a Linux signal number or name: 9, KILL, SIGKILL, kill.
func parseSignal(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return 0, fmt.Errorf("signal %d: want 1-64", n)
		}
		return n, nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if n, ok := linuxSignal(name); ok {
		return n, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
