package main

import (
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// powerOff ends the VM: what is left running gets SIGTERM, then SIGKILL,
// the disks are synced, and the kernel powers off. It never returns.
func powerOff() {
	if n := stopAll(unix.SIGTERM, 2*time.Second); n > 0 {
		stopAll(unix.SIGKILL, time.Second)
	}
	unix.Sync()
	logf("power off")
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	logf("power off: %v; halting", err)
	err = unix.Reboot(unix.LINUX_REBOOT_CMD_HALT)
	// Last resort: init exiting panics the kernel, and panic=-1 (with
	// QEMU's -no-reboot) ends the VM.
	logf("halt: %v", err)
	os.Exit(1)
}

// stopAll sends sig to every process but init and waits up to wait for
// them to go; it returns how many were left to signal.
func stopAll(sig unix.Signal, wait time.Duration) int {
	n := len(userProcesses())
	if n == 0 {
		return 0
	}
	_ = unix.Kill(-1, sig)
	for end := time.Now().Add(wait); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		reapExited()
		if len(userProcesses()) == 0 {
			break
		}
	}
	return n
}

func reapExited() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// userProcesses lists the processes other than init and kernel threads
// (kthreadd, PID 2, and its children).
func userProcesses() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 2 {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if ppid, ok := statPPID(string(stat)); ok && ppid != 2 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// statPPID reads the parent PID from /proc/<pid>/stat: "pid (comm) state
// ppid ...", where comm may hold spaces and parentheses.
func statPPID(stat string) (int, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}
