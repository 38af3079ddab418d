package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/guest/runtime"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
)

// process is a container's init or exec.
type process struct {
	pid   int
	proc  *os.Process
	relay *runtime.Relay
	exit  chan struct{} // closed once the exit status is known
	done  chan struct{} // closed once exited and drained
	code  int

	wmu      sync.Mutex
	waiters  map[*func()]struct{} // called once done
	finished bool
}

// onDone calls fn once the process has exited and drained, at once if it
// has. The returned cancel withdraws fn, reporting whether it was still
// pending.
func (p *process) onDone(fn func()) (cancel func() bool) {
	p.wmu.Lock()
	if p.finished {
		p.wmu.Unlock()
		fn()
		return func() bool { return false }
	}
	if p.waiters == nil {
		p.waiters = make(map[*func()]struct{})
	}
	key := &fn
	p.waiters[key] = struct{}{}
	p.wmu.Unlock()
	return func() bool {
		p.wmu.Lock()
		defer p.wmu.Unlock()
		_, pending := p.waiters[key]
		delete(p.waiters, key)
		return pending
	}
}

// start runs sp in the container with the host's stdio.
func (c *Container) start(ctx context.Context, sp *specs.Process, params *protocol.ProcessParameters, settings protocol.VsockStdioRelaySettings, init bool) (*process, error) {
	lp, err := newLibcontainerProcess(sp)
	if err != nil {
		return nil, err
	}
	lp.Init = init
	// libcontainer's init logs at debug level unless told otherwise: some
	// twenty lines a start, each written by the child and decoded by us,
	// only to be dropped. It logs at the agent's level instead.
	lp.LogLevel = strconv.Itoa(int(log.G(ctx).Logger.GetLevel()))
	// The host listens on its stdio ports already: dial them while the
	// process starts. Output waits in the pipes until the relay runs.
	pending := runtime.DialStdioAsync(ctx, c.m.cfg.Dialer, settings)
	terminal := sp.Terminal || params.EmulateConsole
	var relay *runtime.Relay
	var consoleParent *os.File
	if terminal {
		parent, child, err := socketPair()
		if err != nil {
			closePending(pending)
			return nil, err
		}
		defer child.Close()
		defer parent.Close()
		lp.ConsoleSocket, consoleParent = child, parent
		if len(params.ConsoleSize) == 2 && params.ConsoleSize[0] != 0 {
			lp.ConsoleHeight, lp.ConsoleWidth = params.ConsoleSize[0], params.ConsoleSize[1]
		}
	} else {
		relay, err = runtime.NewPipeRelayFor(settings)
		if err != nil {
			closePending(pending)
			return nil, err
		}
		f := relay.Child()
		if f[0] != nil {
			lp.Stdin = f[0]
		}
		if f[1] != nil {
			lp.Stdout = f[1]
		}
		if f[2] != nil {
			lp.Stderr = f[2]
		}
	}
	lc, err := c.lc()
	if err != nil {
		if relay != nil {
			relay.Close()
		}
		closePending(pending)
		return nil, err
	}
	if init {
		c.cgPrep.wait()
	}
	pid, err := c.m.cfg.Reaper.Start(func() (int, error) {
		if err := lc.Run(lp); err != nil {
			return 0, err
		}
		return lp.Pid()
	})
	if err != nil {
		if relay != nil {
			relay.Close()
		}
		closePending(pending)
		return nil, startError(err)
	}
	// abandon ends the started process when its stdio cannot be had.
	abandon := func() {
		_ = lp.Signal(syscall.SIGKILL)
		_, _ = lp.Wait()
		c.m.cfg.Reaper.Untrack(pid)
		if relay != nil {
			relay.Close()
		}
	}
	// The process is known by a pidfd of its own from here on, as
	// libcontainer knows it (its Process.Wait is this Wait, on the same
	// kind of handle): libcontainer's process object, which holds its
	// container object and with it the whole configuration, is not kept.
	proc, err := os.FindProcess(pid)
	if err != nil {
		abandon()
		closePending(pending)
		return nil, err
	}
	stdio, err := pending.Wait()
	if err != nil {
		abandon()
		return nil, err
	}
	if terminal {
		master, err := recvConsole(consoleParent)
		if err != nil {
			abandon()
			stdio.Close()
			return nil, fmt.Errorf("receive container console: %w", err)
		}
		relay = runtime.NewConsoleRelay(stdio, master)
	} else {
		relay.Attach(stdio)
	}
	relay.Start()
	log.G(ctx).WithFields(map[string]any{log.FieldContainerID: c.id, log.FieldProcessID: pid, "init": init}).Debug("container process started")
	return &process{pid: pid, proc: proc, relay: relay, exit: make(chan struct{}), done: make(chan struct{})}, nil
}

// closePending closes the connections of a dial the start no longer needs.
func closePending(p *runtime.PendingStdio) {
	if stdio, err := p.Wait(); err == nil {
		stdio.Close()
	}
}

// startError maps libcontainer's start failures onto results the host can
// act on.
func startError(err error) error {
	// The init's own failures arrive as text.
	msg := err.Error()
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) ||
		strings.Contains(msg, "no such file or directory") || strings.Contains(msg, "executable file not found") {
		return fmt.Errorf("start: %w: %w", err, protocol.HrNotFound)
	}
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOEXEC) {
		return fmt.Errorf("start: %w: %w", err, protocol.HrInvalidArg)
	}
	return fmt.Errorf("start: %w", err)
}

// waitExit collects the exit status of the exited process and ends its
// tracking.
func (p *process) waitExit(r *runtime.Reaper) {
	st, _ := p.proc.Wait() // returns at once: the process has exited
	r.Untrack(p.pid)
	if st != nil {
		p.code = runtime.ExitCode(st.Sys().(syscall.WaitStatus))
	} else {
		p.code = -1
	}
	close(p.exit)
}

// drain lets the output drain (bounded) before the exit is reported.
func (p *process) drain(ctx context.Context) {
	if !p.relay.WaitDrained(runtime.DrainGrace) {
		log.G(ctx).WithField(log.FieldProcessID, p.pid).Warn("container process output still open after exit; cut off")
	}
	p.relay.Close()
	close(p.done)
}

// deliver gives the exit code to those waiting for it (OnExit), after
// drain: for an init, only once its container is stopped, so that a host
// that has the exit code can delete the container.
func (p *process) deliver() {
	p.wmu.Lock()
	p.finished = true
	waiters := p.waiters
	p.waiters = nil
	p.wmu.Unlock()
	for fn := range waiters {
		(*fn)()
	}
}

// newLibcontainerProcess turns an OCI process into libcontainer's.
func newLibcontainerProcess(sp *specs.Process) (*libcontainer.Process, error) {
	if len(sp.Args) == 0 {
		return nil, fmt.Errorf("process has no args: %w", protocol.HrInvalidArg)
	}
	env := sp.Env
	if !hasEnv(env, "PATH") {
		env = append(append([]string(nil), env...), "PATH="+runtime.DefaultPath)
	}
	cwd := sp.Cwd
	if cwd == "" {
		cwd = "/"
	}
	nnp := sp.NoNewPrivileges
	lp := &libcontainer.Process{
		Args:            sp.Args,
		Env:             env,
		UID:             int(sp.User.UID),
		GID:             int(sp.User.GID),
		Cwd:             cwd,
		NoNewPrivileges: &nnp,
		AppArmorProfile: sp.ApparmorProfile,
		Label:           sp.SelinuxLabel,
	}
	for _, g := range sp.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	if sp.ConsoleSize != nil {
		lp.ConsoleHeight, lp.ConsoleWidth = uint16(sp.ConsoleSize.Height), uint16(sp.ConsoleSize.Width)
	}
	if caps := sp.Capabilities; caps != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding: caps.Bounding, Effective: caps.Effective, Inheritable: caps.Inheritable,
			Permitted: caps.Permitted, Ambient: caps.Ambient,
		}
	}
	for _, rl := range sp.Rlimits {
		t, ok := rlimitTypes[rl.Type]
		if !ok {
			return nil, fmt.Errorf("rlimit %q: %w", rl.Type, protocol.HrInvalidArg)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: rl.Hard, Soft: rl.Soft})
	}
	return lp, nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if len(e) > len(key) && e[len(key)] == '=' && e[:len(key)] == key {
			return true
		}
	}
	return false
}

// rlimitTypes maps OCI rlimit names to resources.
var rlimitTypes = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// socketPair is the console socket: libcontainer's init sends the
// terminal's master over it.
func socketPair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("console socket: %w", err)
	}
	// Our end is non-blocking so the runtime can poll it (and time it out).
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "console-parent"), os.NewFile(uintptr(fds[1]), "console-child"), nil
}

// recvConsole receives the terminal master sent over the console socket.
func recvConsole(sock *os.File) (console.Console, error) {
	_ = sock.SetReadDeadline(time.Now().Add(10 * time.Second))
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	var n, oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), name, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("console socket: want one control message (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("console socket: want one descriptor (%v)", err)
	}
	// Non-blocking, so closing it ends a relay's pending read.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	f := os.NewFile(uintptr(fds[0]), string(name[:n]))
	con, err := console.ConsoleFromFile(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return con, nil
}
