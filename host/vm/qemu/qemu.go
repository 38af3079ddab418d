//go:build linux

package qemu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/uvmgcs/gcs/host/qmp"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/transport"
)

// Binary is the QEMU executable looked up on PATH.
const Binary = "qemu-system-x86_64"

// shutdownGrace is how long Shutdown waits for QEMU to exit after "quit"
// before killing it, when ctx allows that long.
const shutdownGrace = 5 * time.Second

// stderrTail is how much of QEMU's stderr an error message carries.
const stderrTail = 4 << 10

// lifecycle states.
type state int

const (
	stateNew state = iota
	stateStarting
	stateRunning
	stateStopped
)

// VM is a utility VM run by QEMU. Make one with New.
type VM struct {
	cfg  vm.Config
	opts Options
	host hostPaths

	mu       sync.Mutex // guards the fields below it up to done
	state    state
	paths    paths
	cmd      *exec.Cmd
	qmp      *qmp.Client
	agent    net.Conn
	mux      *transport.MuxHost // the agent's ports over agent
	vsockCID uint32
	stderr   *tailBuffer
	console  chan struct{} // closed when the console stream ends
	logger   *logrus.Entry

	done    chan struct{} // closed when QEMU is reaped (or Shutdown ran before Start)
	waitErr error         // QEMU's exit; set before done closes

	shutdownOnce sync.Once
	shutdownErr  error // set inside shutdownOnce

	att *attached // set when the VM was reached with Attach

	devMu   sync.Mutex // serializes hot-plug; guards the device tables
	luns    map[uint8]scsiDisk
	diskGen uint64 // disks added so far, for unique node names
	pmems   uint32 // virtio-pmem devices added so far
	nics    int    // NICs added so far
}

var _ vm.VM = (*VM)(nil)

// New returns a VM for cfg and opts; nothing happens until Start.
func New(cfg vm.Config, opts Options) *VM {
	// QEMU runs in its own directory: relative boot files would not resolve.
	for _, p := range []*string{&cfg.Kernel, &cfg.Initrd} {
		if *p != "" {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
	}
	return &VM{
		cfg:  cfg,
		opts: opts,
		host: defaultHostPaths(),
		done: make(chan struct{}),
		luns: make(map[uint8]scsiDisk),
	}
}

// Start implements vm.VM: it validates the config, launches QEMU, connects
// QMP and the agent channel. On any failure QEMU is killed and reaped and
// the state directory removed.
func (v *VM) Start(ctx context.Context) (err error) {
	v.mu.Lock()
	if v.state != stateNew {
		v.mu.Unlock()
		return fmt.Errorf("start vm: already started or shut down: %w", vm.ErrNotRunning)
	}
	v.state = stateStarting
	v.mu.Unlock()
	defer func() {
		if err != nil {
			v.stop(context.Background(), false)
		}
	}()

	cfg := v.cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("start vm: %w", err)
	}
	if err := v.opts.validate(); err != nil {
		return fmt.Errorf("start vm: %w", err)
	}
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return fmt.Errorf("start vm: %w", err)
	}
	p, err := makePaths(cfg.StateDir)
	if err != nil {
		return fmt.Errorf("start vm: %w", err)
	}
	v.mu.Lock()
	if v.state != stateStarting { // Shutdown ran meanwhile
		v.mu.Unlock()
		p.remove()
		return fmt.Errorf("start vm: shut down during start: %w", vm.ErrNotRunning)
	}
	v.paths = p
	v.mu.Unlock()

	accel, reason := chooseAccel(v.opts.Accel, v.host)
	var cid uint32
	if hasVhostVsock(v.host) {
		cid = newVsockCID()
	}
	logger := log.G(ctx).WithField("vm", p.stateDir)
	logger.WithFields(logrus.Fields{"accel": accel, "reason": reason, "vsock-cid": cid}).Info("starting qemu")

	consoleFile, err := os.OpenFile(p.consoleLog, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start vm: console log: %w", err)
	}
	consoleR, consoleW, err := os.Pipe()
	if err != nil {
		consoleFile.Close()
		return fmt.Errorf("start vm: console pipe: %w", err)
	}
	l := launch{cfg: cfg, opts: v.opts, accel: accel, vsockCID: cid, paths: p}
	if accel == AccelTCG {
		cpuinfo, _ := os.ReadFile(v.host.cpuinfo)
		l.tscKHz = hostTSCKHz(string(cpuinfo))
	}
	args := l.args()
	logger.WithField("args", args).Debug("qemu command line")
	cmd := exec.Command(bin, args...)
	cmd.Stdout = consoleW
	stderr := &tailBuffer{max: stderrTail}
	cmd.Stderr = stderr
	cmd.Dir = p.stateDir
	// No VM outlives a crashed or killed host process. Pdeathsig fires
	// when the OS thread that forked QEMU exits, and a goroutine that ends
	// while locked to its thread (netns code in a shim does that) takes
	// the thread with it: startLocked forks from a thread of its own that
	// lives until QEMU has exited. A VM that is to outlive the process that
	// uses it lives in a relay process (host/uvm/named) and is reached
	// with Attach.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	console := make(chan struct{})

	// Launch under the lock, so that a concurrent Shutdown either sees the
	// process or keeps it from being launched.
	v.mu.Lock()
	if v.state != stateStarting {
		err = fmt.Errorf("start vm: shut down during start: %w", vm.ErrNotRunning)
	} else if err = v.startLocked(cmd); err != nil {
		err = fmt.Errorf("start vm: run %s: %w", bin, err)
	} else {
		logger = logger.WithField("qemu-pid", cmd.Process.Pid)
		v.cmd, v.stderr, v.console, v.vsockCID, v.logger = cmd, stderr, console, cid, logger
	}
	v.mu.Unlock()
	consoleW.Close()
	if err != nil {
		consoleR.Close()
		consoleFile.Close()
		return err
	}
	go func() {
		defer close(console)
		defer consoleFile.Close()
		defer consoleR.Close()
		streamConsole(consoleR, consoleFile, cfg.ConsoleLog, logger.WithField("console", "ttyS0"))
	}()
	go v.reap(cmd)
	if err := writeAttachInfo(p, cmd.Process.Pid); err != nil {
		return v.startError(ctx, "write attach info", err)
	}

	qmpConn, err := dialUnix(ctx, p.qmpSocket, v.done)
	if err != nil {
		return v.startError(ctx, "connect qmp", err)
	}
	qc, err := qmp.New(log.WithLogger(ctx, logger), qmpConn)
	if err != nil {
		qmpConn.Close()
		return v.startError(ctx, "connect qmp", err)
	}
	v.mu.Lock()
	stopped := v.state != stateStarting
	if !stopped {
		v.qmp = qc
	}
	v.mu.Unlock()
	if stopped { // Shutdown ran meanwhile and did not see qc
		qc.Close()
		return fmt.Errorf("start vm: shut down during start: %w", vm.ErrNotRunning)
	}

	agent, err := dialUnix(ctx, p.agentSock, v.done)
	if err != nil {
		return v.startError(ctx, "connect agent channel", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state != stateStarting {
		agent.Close()
		return fmt.Errorf("start vm: shut down during start: %w", vm.ErrNotRunning)
	}
	v.agent = agent
	v.state = stateRunning
	logger.WithField("qemu", qc.Greeting().Version.String()).Info("qemu running")
	return nil
}

// startLocked starts cmd from an OS thread locked for the purpose, which
// exits only after QEMU has been reaped (Pdeathsig is per thread).
func (v *VM) startLocked(cmd *exec.Cmd) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		err := cmd.Start()
		started <- err
		if err == nil {
			<-v.done
		}
	}()
	return <-started
}

// exitWait is how long a failed Start waits for QEMU to exit on its own,
// so that the error can carry QEMU's reason: a QEMU that refuses its
// command line closes its sockets just before it exits.
const exitWait = time.Second

// startError wraps err from step, adding QEMU's exit and stderr when QEMU
// has exited or exits shortly.
func (v *VM) startError(ctx context.Context, step string, err error) error {
	var timeout <-chan time.Time
	if ctx.Err() == nil {
		timer := time.NewTimer(exitWait)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-v.done:
		return fmt.Errorf("start vm: %s: qemu exited (%v): %s: %w", step, v.waitErr, v.stderr.String(), err)
	case <-timeout:
	case <-ctx.Done():
	}
	return fmt.Errorf("start vm: %s: %w", step, err)
}

// reap waits for QEMU and records how it exited.
func (v *VM) reap(cmd *exec.Cmd) {
	err := cmd.Wait()
	v.mu.Lock()
	v.waitErr = err
	if v.state == stateRunning {
		v.state = stateStopped
	}
	logger, stderr := v.logger, v.stderr.String()
	v.mu.Unlock()
	if stderr != "" {
		logger = logger.WithField("stderr", stderr)
	}
	logger.WithError(err).Info("qemu exited")
	close(v.done)
}

// newVsockCID picks a guest CID; 0-2 are reserved, and QEMU refuses one
// already in use on the host.
func newVsockCID() uint32 { return 3 + rand.Uint32N(1<<31) }

// VsockCID is the guest's vsock context id, or 0 when the host has no
// vhost-vsock and the VM no vsock device.
func (v *VM) VsockCID() uint32 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.vsockCID
}

// Agent implements vm.VM: the agent's ports, multiplexed over the
// virtio-serial channel. It is a *transport.MuxHost, whose SetFallback a
// relay uses to carry ports nobody in this process listens on.
// The multiplexer starts with the first call.
func (v *VM) Agent() transport.Listener {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.att != nil {
		return v.att.agent
	}
	if v.mux == nil {
		if v.agent == nil || v.state != stateRunning {
			return nil
		}
		mux, err := transport.NewMuxHost(v.agent)
		if err != nil { // yamux refuses only a bad config
			v.logger.WithError(err).Error("agent channel multiplexer")
			return nil
		}
		v.mux = mux
	}
	return v.mux
}

// Done implements vm.VM.
func (v *VM) Done() <-chan struct{} { return v.done }

// Wait implements vm.VM: it returns nil when QEMU exited cleanly (or never
// ran), and the exit error otherwise, e.g. after Shutdown had to kill it.
func (v *VM) Wait() error {
	<-v.done
	return v.waitErr
}

// Shutdown implements vm.VM: "quit" over QMP, SIGKILL when QEMU has not
// exited by the grace period or ctx's end, then reap and clean up.
// Concurrent and later calls wait for the first and return its result.
func (v *VM) Shutdown(ctx context.Context) error {
	v.stop(ctx, true)
	return v.shutdownErr
}

// stop runs the shutdown once; graceful asks QEMU to quit first.
func (v *VM) stop(ctx context.Context, graceful bool) {
	v.shutdownOnce.Do(func() { v.shutdownErr = v.shutdown(ctx, graceful) })
}

func (v *VM) shutdown(ctx context.Context, graceful bool) error {
	v.mu.Lock()
	v.state = stateStopped
	cmd, qc, agent, mux, console, p, logger := v.cmd, v.qmp, v.agent, v.mux, v.console, v.paths, v.logger
	v.mu.Unlock()

	if v.att != nil {
		return v.shutdownAttached(ctx, qc, logger)
	}
	if cmd == nil { // never launched, and now never will be
		close(v.done)
		return p.remove()
	}
	if graceful && qc != nil && ctx.Err() == nil {
		v.quit(ctx, qc, logger)
	}
	select {
	case <-v.done:
	default:
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			logger.WithError(err).Warn("kill qemu")
		}
		<-v.done
	}
	if qc != nil {
		qc.Close()
	}
	if mux != nil {
		mux.Close()
	}
	if agent != nil {
		agent.Close()
	}
	<-console
	return p.remove()
}

// quit asks QEMU to exit and waits, within the grace period and ctx, for it
// to do so.
func (v *VM) quit(ctx context.Context, qc *qmp.Client, logger *logrus.Entry) {
	ctx, cancel := context.WithTimeout(ctx, shutdownGrace)
	defer cancel()
	if err := qc.Execute(ctx, "quit", nil, nil); err != nil && !errors.Is(err, qmp.ErrClosed) {
		logger.WithError(err).Warn("qmp quit failed; killing qemu")
		return
	}
	select {
	case <-v.done:
	case <-ctx.Done():
		logger.Warn("qemu did not exit after quit; killing it")
	}
}

// running returns the QMP client when the VM is running.
func (v *VM) running() (*qmp.Client, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state != stateRunning {
		return nil, vm.ErrNotRunning
	}
	return v.qmp, nil
}

// Pid is the QEMU process's id, 0 before Start launched it.
func (v *VM) Pid() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.att != nil {
		return v.att.pid
	}
	if v.cmd == nil || v.cmd.Process == nil {
		return 0
	}
	return v.cmd.Process.Pid
}
