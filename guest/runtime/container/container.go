package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
)

// state is where a container is in its life.
type state int

const (
	created state = iota
	running
	stopped
)

// Container is one container and its processes. It keeps of its bundle
// only what it still needs once created: the decoded spec and
// libcontainer's configuration built from it are dropped (libcontainer
// holds its own), as is the init's process spec once the init runs.
// Once the init has started, libcontainer's object for the container (its
// whole configuration, cgroup manager and start state: most of what a
// running container would hold) is dropped, and loaded again from
// libcontainer's state when next needed, as runc does for each command; a
// loaded one is kept while the agent is busy and dropped when it goes idle
// (see lc).
type Container struct {
	m  *Manager
	id string

	lcMu sync.Mutex
	lcs  *libcontainer.Container // nil: load from the state (see lc)

	dir, scratch, rootfs string      // bundle, scratch to remove, root filesystem
	privatePid           bool        // a pid namespace of its own
	cgPrep               *cgroupPrep // cgroups made ahead of the start
	freezer              string      // the cgroup whose freezer tells paused

	mu       sync.Mutex
	state    state
	initSpec *specs.Process // the init's, until it starts
	init     *process
	procs    map[int]*process // execs, forgotten after their first delivered wait
	shutdown string           // the notification type a requested shutdown earns
	oom      bool
	starting bool
	stopped  chan struct{} // closed once the init has exited and drained
	// activity is the ActivityId of the Create request, which the exit
	// notification echoes (as hcsshim's guest does).
	activity string
}

func newContainer(m *Manager, id string, b *bundle, lc *libcontainer.Container) *Container {
	return &Container{m: m, id: id, lcs: lc, dir: b.dir, scratch: b.scratch, rootfs: b.spec.Root.Path,
		privatePid: privatePidNS(b.spec), initSpec: b.spec.Process,
		procs: make(map[int]*process), stopped: make(chan struct{})}
}

// lc returns libcontainer's object for the container: the one Create made
// until the init has started, afterwards the one last loaded from
// libcontainer's state (state.json), loading it when it was dropped.
func (c *Container) lc() (*libcontainer.Container, error) {
	c.lcMu.Lock()
	defer c.lcMu.Unlock()
	if c.lcs != nil {
		return c.lcs, nil
	}
	lc, err := libcontainer.Load(c.m.lcRoot, c.id)
	if err != nil {
		return nil, fmt.Errorf("load container %q: %w", c.id, err)
	}
	c.lcs = lc
	c.m.trim.Touch() // dropped again once the agent is idle
	return lc, nil
}

// paused reports whether the container's cgroup is frozen. It reads the
// freezer state as libcontainer's Status does first (a frozen cgroup is
// Paused whatever else holds), without the rest of Status: a read and
// parse of the init's /proc stat and a stat of the exec FIFO, 7% of the
// agent's CPU per exec.
func (c *Container) paused() bool {
	if c.freezer != "" {
		f, err := frozen(c.freezer)
		return err == nil && f
	}
	lc, err := c.lc()
	if err != nil {
		return false
	}
	s, err := lc.Status()
	return err == nil && s == libcontainer.Paused
}

// releaseLC drops libcontainer's object for a container whose init has
// started (its state is saved and loads again); a container never started
// keeps the one Create made, which has no saved state yet. Operations
// under way keep the object they hold.
func (c *Container) releaseLC() {
	c.mu.Lock()
	keep := c.state == created || c.starting
	c.mu.Unlock()
	if keep {
		return
	}
	c.lcMu.Lock()
	c.lcs = nil
	c.lcMu.Unlock()
}

// initPid is the running init's pid.
func (c *Container) initPid() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != running {
		return 0, fmt.Errorf("container is not running: %w", protocol.HrVmcomputeInvalidState)
	}
	return c.init.pid, nil
}

// ExecProcess starts container id's init (params without OciProcess) or an
// exec in it.
func (m *Manager) ExecProcess(ctx context.Context, id string, params *protocol.ProcessParameters, stdio protocol.VsockStdioRelaySettings) (int, error) {
	c, err := m.get(id)
	if err != nil {
		return 0, err
	}
	m.warmer.warm()
	defer m.trim.Touch()
	if len(params.OciProcess) == 0 {
		return c.startInit(ctx, params, stdio)
	}
	var sp specs.Process
	if err := json.Unmarshal(params.OciProcess, &sp); err != nil {
		return 0, fmt.Errorf("OciProcess: %v: %w", err, protocol.HrVmcomputeInvalidJSON)
	}
	return c.exec(ctx, &sp, params, stdio)
}

func (c *Container) startInit(ctx context.Context, params *protocol.ProcessParameters, stdio protocol.VsockStdioRelaySettings) (int, error) {
	c.mu.Lock()
	if c.state != created || c.starting {
		c.mu.Unlock()
		return 0, fmt.Errorf("container %q was already started: %w", c.id, protocol.HrVmcomputeInvalidState)
	}
	c.starting = true
	sp := c.initSpec
	c.mu.Unlock()
	p, err := c.start(ctx, sp, params, stdio, true)
	c.mu.Lock()
	c.starting = false
	if err != nil {
		c.mu.Unlock()
		return 0, err
	}
	c.init, c.state, c.initSpec = p, running, nil
	c.mu.Unlock()
	// The object Create made holds the start's state too: dropped now,
	// so that a burst of starts reuses its memory instead of adding to it.
	c.releaseLC()
	c.m.cfg.Reaper.OnExit(p.pid, func() { c.waitInit(ctx, p) })
	return p.pid, nil
}

func (c *Container) exec(ctx context.Context, sp *specs.Process, params *protocol.ProcessParameters, stdio protocol.VsockStdioRelaySettings) (int, error) {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st != running {
		return 0, fmt.Errorf("container %q is not running: %w", c.id, protocol.HrVmcomputeInvalidState)
	}
	// libcontainer would hang joining a frozen cgroup's namespaces.
	if c.paused() {
		return 0, fmt.Errorf("container %q is paused: %w", c.id, protocol.HrVmcomputeInvalidState)
	}
	p, err := c.start(ctx, sp, params, stdio, false)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.procs[p.pid] = p
	c.mu.Unlock()
	c.m.cfg.Reaper.OnExit(p.pid, func() {
		p.waitExit(c.m.cfg.Reaper)
		p.drain(ctx)
		p.deliver()
	})
	return p.pid, nil
}

// waitInit collects the exited init, ends what is left of the container,
// and tells the host.
func (c *Container) waitInit(ctx context.Context, p *process) {
	p.waitExit(c.m.cfg.Reaper)
	if !c.privatePid {
		// No kernel pid-namespace teardown ends a shared namespace's
		// leftovers: kill them, which also lets their stdio drain.
		c.killAll()
	}
	p.drain(ctx)
	c.mu.Lock()
	c.state = stopped
	kind := c.shutdown
	oom := c.oom || (p.code == 128+int(unix.SIGKILL) && c.oomKilled())
	c.oom = oom
	c.mu.Unlock()
	close(c.stopped)
	p.deliver()
	if kind == "" {
		kind = protocol.NotificationUnexpectedExit
	}
	info, _ := json.Marshal(protocol.ExitInfo{ExitCode: p.code, OOMKilled: oom})
	infoStr, _ := json.Marshal(string(info))
	log.G(ctx).WithFields(map[string]any{log.FieldContainerID: c.id, "exit": p.code, "oom": oom}).Debug("container exited")
	// Result is an HRESULT: 0, as hcsshim's guest sends; the exit code of
	// record is WaitForProcess on the init, ResultInfo only an extension.
	c.m.cfg.Notify(context.WithoutCancel(ctx), protocol.ContainerNotificationMessage{
		RequestBase: protocol.RequestBase{ContainerID: c.id, ActivityID: c.activity},
		Type:        kind,
		Operation:   "None",
		Result:      0,
		ResultInfo:  infoStr,
	})
}

// privatePidNS reports whether spec gives the container a pid namespace
// of its own.
func privatePidNS(spec *specs.Spec) bool {
	for _, n := range spec.Linux.Namespaces {
		if n.Type == specs.PIDNamespace {
			return n.Path == ""
		}
	}
	return false
}

// killAll SIGKILLs every process left in the container's cgroup, then
// thaws a paused container: a frozen process never acts on its SIGKILL,
// so it would neither exit nor let its cgroup go (and with the signal
// already pending it runs no further code once thawed).
func (c *Container) killAll() {
	lc, err := c.lc()
	if err != nil {
		return
	}
	pids, err := lc.Processes()
	if err != nil {
		return
	}
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	if s, err := lc.Status(); err == nil && s == libcontainer.Paused {
		_ = lc.Resume()
	}
}

// kill stops the container at once (agent shutdown).
func (c *Container) kill() {
	c.mu.Lock()
	init := c.init
	if c.state == running && c.shutdown == "" {
		c.shutdown = protocol.NotificationForcedExit
	}
	c.mu.Unlock()
	if init != nil {
		_ = init.proc.Signal(syscall.SIGKILL)
	}
	c.killAll()
}

// waitStopped waits until a started container's init has exited.
func (c *Container) waitStopped(ctx context.Context) error {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st == created {
		return nil
	}
	select {
	case <-c.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// process looks up pid among the container's processes.
func (c *Container) process(pid int) (*process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.init != nil && c.init.pid == pid {
		return c.init, nil
	}
	if p, ok := c.procs[pid]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("process %d in container %q: %w", pid, c.id, protocol.HrNotFound)
}

// destroy removes the container's state once it is not running.
func (c *Container) destroy(ctx context.Context) error {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st == running {
		return fmt.Errorf("container %q is running: %w", c.id, protocol.HrVmcomputeInvalidState)
	}
	// An init that ran in a pid namespace of its own took every process
	// of the namespace with it: the kernel kills them before the init's
	// exit is reported. Only a shared namespace (or a start under way)
	// can leave any.
	if st != stopped || !c.privatePid {
		c.killAll()
	}
	c.cgPrep.wait() // made ahead or not, Destroy removes them after this
	lc, err := c.lc()
	if err != nil {
		return err
	}
	if err := lc.Destroy(); err != nil {
		return fmt.Errorf("destroy container %q: %w", c.id, err)
	}
	// The root file system may still be mounted inside the bundle (the
	// host removes its layers after this): never delete through it.
	if err := unmountUnder(c.dir); err != nil {
		return fmt.Errorf("unmount under the bundle: %w", err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("remove bundle: %w", err)
	}
	if c.scratch != "" {
		if err := os.RemoveAll(c.scratch); err != nil {
			return fmt.Errorf("remove scratch: %w", err)
		}
	}
	log.G(ctx).WithField(log.FieldContainerID, c.id).Debug("container state deleted")
	return nil
}
