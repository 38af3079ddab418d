package host

import (
	"fmt"
	"strconv"
	"strings"
)

// Linux signal numbers a host on any OS sends to the guest: the agent
// signals in the guest's numbering (x86 and arm64), which is not this
// host's when it is Windows.
const (
	SIGHUP  = 1
	SIGINT  = 2
	SIGKILL = 9
	SIGTERM = 15
)

// signalNames are the Linux signals by number, without "SIG".
var signalNames = [...]string{
	1: "HUP", 2: "INT", 3: "QUIT", 4: "ILL", 5: "TRAP", 6: "ABRT", 7: "BUS", 8: "FPE",
	9: "KILL", 10: "USR1", 11: "SEGV", 12: "USR2", 13: "PIPE", 14: "ALRM", 15: "TERM",
	16: "STKFLT", 17: "CHLD", 18: "CONT", 19: "STOP", 20: "TSTP", 21: "TTIN", 22: "TTOU",
	23: "URG", 24: "XCPU", 25: "XFSZ", 26: "VTALRM", 27: "PROF", 28: "WINCH", 29: "IO",
	30: "PWR", 31: "SYS",
}

// maxSignal is the highest Linux signal (SIGRTMAX).
const maxSignal = 64

// Signal returns the Linux signal number by name (KILL, SIGKILL, kill).
func Signal(name string) (int, bool) {
	name = strings.TrimPrefix(strings.ToUpper(name), "SIG")
	for n, s := range signalNames {
		if s != "" && s == name {
			return n, true
		}
	}
	return 0, false
}

// SignalName is the name of Linux signal n ("SIGKILL"), or its number.
func SignalName(n int) string {
	if n > 0 && n < len(signalNames) && signalNames[n] != "" {
		return "SIG" + signalNames[n]
	}
	return strconv.Itoa(n)
}

// ParseSignal parses a Linux signal number or name: 9, KILL, SIGKILL, kill.
func ParseSignal(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > maxSignal {
			return 0, fmt.Errorf("signal %d: want 1-%d", n, maxSignal)
		}
		return n, nil
	}
	if n, ok := Signal(s); ok {
		return n, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
