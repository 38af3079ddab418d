package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// agentEnv is gcs's environment. GODEBUG=disablethp=1 keeps the Go heap
// off transparent huge pages: the Debian kernel backs anonymous memory with
// 2 MiB pages whenever it can, and the agent's small heap then grows its
// resident memory in 2 MiB steps (measured in a 1 GiB VM: 4.4 MiB of
// anonymous memory idle, 6.4 MiB after mounting a layer, against 0.8 MiB
// in a 512 MiB VM where no huge page was to be had). What gcs starts does
// not inherit it: UVM processes and container inits get environments of
// their own.
var agentEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"GODEBUG=disablethp=1",
}

// stopGrace is how long gcs gets to exit after a shutdown signal.
const stopGrace = 10 * time.Second

// catchSignals turns the signals that would end a Go program (and so
// panic the kernel, init having died) into requests to shut down, or
// drops them. Ctrl-Alt-Del becomes SIGINT instead of a reboot. SIGUSR1
// and SIGUSR2 are how busybox's halt and poweroff ask PID 1 to stop; the
// kernel runs /sbin/poweroff (busybox's) when the host asks the VM to
// shut down through hv_utils, Hyper-V's shutdown service.
//
// Dropped signals are caught, not ignored: an ignored signal stays ignored
// across exec, in gcs and every process it starts.
func catchSignals() <-chan os.Signal {
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	stop := make(chan os.Signal, 4)
	signal.Notify(stop, unix.SIGTERM, unix.SIGINT, unix.SIGPWR, unix.SIGUSR1, unix.SIGUSR2)
	drop := make(chan os.Signal, 4)
	signal.Notify(drop, unix.SIGHUP, unix.SIGQUIT)
	go func() {
		for s := range drop {
			logf("ignoring %v", s)
		}
	}()
	return stop
}

// superviseAgent starts the agent (exe, named name in its argv[0]) in its
// own session, its output on the console, reaps every child (orphans are
// reparented to PID 1), and returns once the agent has exited, or stopGrace after a shutdown signal.
func superviseAgent(exe, name string, args []string, sigs <-chan os.Signal) error {
	console, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		logf("console: %v; gcs writes to init's stderr", err)
		console = os.Stderr
	}
	devnull, err := os.Open("/dev/null")
	if err != nil {
		return err
	}
	logf("starting %s %s", name, strings.Join(args, " "))
	pid, err := syscall.ForkExec(exe, append([]string{name}, args...), &syscall.ProcAttr{
		Dir:   "/",
		Env:   agentEnv,
		Files: []uintptr{devnull.Fd(), console.Fd(), console.Fd()},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	devnull.Close()
	if console != os.Stderr {
		console.Close()
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	exited := make(chan unix.WaitStatus, 1)
	go reapChildren(pid, exited)

	var deadline <-chan time.Time
	for {
		select {
		case ws := <-exited:
			logf("gcs %s", describeExit(ws))
			return nil
		case s := <-sigs:
			logf("%v: stopping gcs", s)
			_ = unix.Kill(pid, unix.SIGTERM)
			if deadline == nil {
				deadline = time.After(stopGrace)
			}
		case <-deadline:
			logf("gcs still running %v after the shutdown signal", stopGrace)
			return nil
		}
	}
}

// reapChildren waits for every child, reports the agent's exit, and
// returns when there are no children left.
func reapChildren(agent int, exited chan<- unix.WaitStatus) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case err == unix.EINTR:
		case err != nil:
			return
		case pid == agent:
			exited <- ws
		}
	}
}

func describeExit(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return fmt.Sprintf("killed by %v", ws.Signal())
	}
	return fmt.Sprintf("exited with status %d", ws.ExitStatus())
}
