// Package timerslack gives the processes the host asks the agent for the
// kernel's default timer slack back.
//
// The agent runs with a timer slack of 1 ms, set before its Go runtime
// starts (cmd/gcs). The runtime's monitor thread (sysmon) sleeps 20 us at a
// time while goroutines block in system calls, as libcontainer's do through
// every container start and exec, and with the default 50 us slack it woke
// every 70-90 us, each time preempting whatever ran on its CPU (the
// container's init, on two CPUs). Timer slack is inherited by the threads
// and processes a thread creates, so the processes the host asks for —
// containers, execs, processes in the utility VM — start from a thread
// whose slack is the default again and time their sleeps as they would
// under runc. The agent's own helpers (mke2fs, the DHCP client) keep its
// slack.
package timerslack

import (
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// Default is the kernel's default timer slack, in nanoseconds.
const Default = 50_000

// Set sets the calling thread's timer slack; the caller has locked its
// goroutine to the thread.
func Set(ns int) error {
	return unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(ns), 0, 0, 0)
}

// Start starts cmd from a thread whose timer slack is Default, so that the
// process inherits the default rather than the agent's slack.
func Start(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil || prev == Default || Set(Default) != nil {
		return cmd.Start()
	}
	defer Set(prev)
	return cmd.Start()
}
