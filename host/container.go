package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/protocol"
)

// Container is a container in the guest. A connection holds one
// Container per id: CreateContainer and OpenContainer hand out the same
// handle until Delete.
type Container struct {
	gc *GuestConnection
	id string

	exited chan struct{}
	note   protocol.ContainerNotificationMessage
	info   protocol.ExitInfo // the notification's uvmgcs extension
	err    error

	mu       sync.Mutex
	settled  *sync.Cond // signalled when starting drops
	starting int        // init CreateProcess calls in flight
	init     *Process   // started through this handle (or, opened, waited for); nil if not

	stopped   chan struct{} // closed when OpenContainer found it stopped
	stateExit int           // the exit code its state reported then
	finishing sync.Once
}

// GuestBundleRoot is where the guest keeps container bundles.
const GuestBundleRoot = "/run/gcs/c"

// CreateContainer creates container id in the guest from spec. Its root
// filesystem (spec.Root.Path) must already be in place in the guest. The
// init starts with the first CreateProcess.
func (gc *GuestConnection) CreateContainer(ctx context.Context, id string, spec *specs.Spec) (*Container, error) {
	sj, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	cj, err := json.Marshal(protocol.ContainerConfig{
		SchemaVersion:    protocol.SchemaVersion{Major: 2, Minor: 1},
		OciBundlePath:    path.Join(GuestBundleRoot, id),
		OciSpecification: sj,
	})
	if err != nil {
		return nil, err
	}
	// Subscribe first: the exit may come before anyone waits.
	notes := gc.Notifications(id)
	if notes == nil {
		return nil, errors.New("too many containers on this connection")
	}
	err = gc.RPC(ctx, protocol.Create, &protocol.CreateRequest{
		RequestBase:     protocol.RequestBase{ContainerID: id},
		ContainerConfig: string(cj),
	}, &protocol.CreateResponse{})
	if err != nil {
		if !IsAlreadyExists(err) {
			gc.ForgetNotifications(id)
		}
		return nil, err
	}
	c, _ := gc.handle(id, notes)
	return c, nil
}

// handle returns the connection's handle on id, making it (and starting
// its exit watch) if there is none; made says which.
func (gc *GuestConnection) handle(id string, notes <-chan protocol.ContainerNotificationMessage) (c *Container, made bool) {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	if c, ok := gc.ctrs[id]; ok {
		return c, false
	}
	c = &Container{gc: gc, id: id, exited: make(chan struct{}), stopped: make(chan struct{})}
	c.settled = sync.NewCond(&c.mu)
	gc.ctrs[id] = c
	go c.watch(notes)
	return c, true
}

// forget drops the connection's handle on c's id.
func (c *Container) forget() {
	c.gc.mu.Lock()
	if c.gc.ctrs[c.id] == c {
		delete(c.gc.ctrs, c.id)
	}
	c.gc.mu.Unlock()
}

// watch waits for the container's exit notification and, when the init was
// started through this handle, for the init's WaitForProcess answer: the
// exit code of record.
func (c *Container) watch(notes <-chan protocol.ContainerNotificationMessage) {
	select {
	case n := <-notes:
		c.note = n
		var s string
		if len(n.ResultInfo) > 0 && json.Unmarshal(n.ResultInfo, &s) == nil {
			_ = json.Unmarshal([]byte(s), &c.info)
		}
	case <-c.stopped: // OpenContainer found it stopped: no notification comes
		c.info.ExitCode = c.stateExit
	case <-c.gc.Done():
		c.finish(c.gc.Err())
		return
	}
	// The notification can overtake the init's ExecProcess answer.
	c.mu.Lock()
	for c.starting > 0 {
		c.settled.Wait()
	}
	init := c.init
	c.mu.Unlock()
	if init != nil {
		<-init.WaitChannel() // answered, or failed with the connection
	}
	c.finish(nil)
}

// finish records how the watch ended, closes exited and publishes the
// exit (an OOM kill first).
func (c *Container) finish(err error) {
	c.finishing.Do(func() {
		c.err = err
		close(c.exited)
		if err != nil {
			return
		}
		pid, _ := c.knownInitPid()
		code, cerr := c.ExitCode()
		if cerr != nil {
			code = c.info.ExitCode // what the guest said, if anything
		}
		if c.info.OOMKilled {
			c.gc.publish(Event{Type: EventOOM, ContainerID: c.id, Pid: pid})
		}
		c.gc.publish(Event{Type: EventExit, ContainerID: c.id, Pid: pid, ExitCode: code, OOMKilled: c.info.OOMKilled})
	})
}

// initProcess is the init started through this handle, nil if none.
func (c *Container) initProcess() *Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.init
}

// ID is the container's id.
func (c *Container) ID() string { return c.id }

// CreateProcess starts a process in the container: its init when
// params.OciProcess is empty (the first call), else an exec.
func (c *Container) CreateProcess(ctx context.Context, params *protocol.ProcessParameters) (*Process, error) {
	if len(params.OciProcess) > 0 {
		return c.gc.ExecProcess(ctx, c.id, params)
	}
	c.mu.Lock()
	c.starting++
	c.mu.Unlock()
	p, err := c.gc.ExecProcess(ctx, c.id, params)
	c.mu.Lock()
	c.starting--
	if err == nil && c.init == nil {
		c.init = p
	}
	c.settled.Broadcast()
	c.mu.Unlock()
	return p, err
}

// Exec runs process p in the running container with the stdio params asks
// for (its command fields are ignored: p says what runs).
func (c *Container) Exec(ctx context.Context, p *specs.Process, params *protocol.ProcessParameters) (*Process, error) {
	pj, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	q := *params
	q.OciProcess = pj
	q.EmulateConsole = q.EmulateConsole || p.Terminal
	return c.gc.ExecProcess(ctx, c.id, &q)
}

// Shutdown asks the init to stop (SIGTERM). A container that already
// stopped is not an error.
func (c *Container) Shutdown(ctx context.Context) error {
	return ignoreStopped(c.gc.RPC(ctx, protocol.ShutdownGraceful, &protocol.RequestBase{ContainerID: c.id}, nil))
}

// Terminate kills the init (SIGKILL). A container that already stopped is
// not an error.
func (c *Container) Terminate(ctx context.Context) error {
	return ignoreStopped(c.gc.RPC(ctx, protocol.ShutdownForced, &protocol.RequestBase{ContainerID: c.id}, nil))
}

func ignoreStopped(err error) error {
	if errors.Is(err, protocol.HrVmcomputeSystemAlreadyStopped) || errors.Is(err, protocol.HrNotFound) {
		return nil
	}
	return err
}

// Pause freezes the container. It needs a guest that announced
// UvmgcsPauseResumeSupported.
func (c *Container) Pause(ctx context.Context) error {
	if !c.gc.caps.GuestDefinedCapabilities.UvmgcsPauseResumeSupported {
		return Classify(fmt.Errorf("guest does not support pause: %w", protocol.HrNotImpl))
	}
	return c.gc.RPC(ctx, protocol.Pause, &protocol.RequestBase{ContainerID: c.id}, nil)
}

// Resume thaws a paused container.
func (c *Container) Resume(ctx context.Context) error {
	if !c.gc.caps.GuestDefinedCapabilities.UvmgcsPauseResumeSupported {
		return Classify(fmt.Errorf("guest does not support resume: %w", protocol.HrNotImpl))
	}
	return c.gc.RPC(ctx, protocol.Resume, &protocol.RequestBase{ContainerID: c.id}, nil)
}

// Update changes the running container's resource limits.
func (c *Container) Update(ctx context.Context, r *specs.LinuxResources) error {
	b, err := json.Marshal(protocol.ContainerConstraints{Linux: r})
	if err != nil {
		return err
	}
	return c.gc.Modify(ctx, c.id, protocol.ModificationRequest{
		ResourceType: protocol.ResourceContainerConstraints,
		RequestType:  protocol.RequestTypeUpdate,
		Settings:     b,
	})
}

// Properties returns the container's process list and statistics.
func (c *Container) Properties(ctx context.Context, types ...string) (*protocol.Properties, *protocol.Metrics, error) {
	q, err := json.Marshal(protocol.PropertyQuery{PropertyTypes: types})
	if err != nil {
		return nil, nil, err
	}
	var resp protocol.GetPropertiesResponse
	if err := c.gc.RPC(ctx, protocol.GetProperties, &protocol.GetPropertiesRequest{
		RequestBase: protocol.RequestBase{ContainerID: c.id},
		Query:       string(q),
	}, &resp); err != nil {
		return nil, nil, err
	}
	var props protocol.Properties
	if err := json.Unmarshal([]byte(resp.Properties), &props); err != nil {
		return nil, nil, fmt.Errorf("decode properties: %w", err)
	}
	var m *protocol.Metrics
	if len(props.LCOWMetrics) > 0 {
		m = new(protocol.Metrics)
		if err := json.Unmarshal(props.LCOWMetrics, m); err != nil {
			return nil, nil, fmt.Errorf("decode metrics: %w", err)
		}
	}
	return &props, m, nil
}

// Wait blocks until the container's init has exited: its exit notification
// arrived and, for an init started through this handle, its WaitForProcess
// was answered. The error is the connection's, not the exit.
func (c *Container) Wait() error {
	<-c.exited
	return c.err
}

// WaitChannel is closed when Wait would return.
func (c *Container) WaitChannel() <-chan struct{} { return c.exited }

// ExitCode is the init's exit code once the container has exited: the
// answer to the init's WaitForProcess, which needs the init to have been
// started through this handle (CreateProcess) or found running when the
// container was opened (OpenContainer waits for it), or, for a container
// that had stopped when it was opened, its state's. The exit
// notification's ExitCode extension is never used: not every guest sends
// it.
func (c *Container) ExitCode() (int, error) {
	select {
	case <-c.exited:
		if c.err != nil {
			return -1, c.err
		}
		if init := c.initProcess(); init != nil {
			return init.ExitCode()
		}
		select {
		case <-c.stopped: // it had stopped when opened: its state said how
			return c.stateExit, nil
		default:
		}
		return -1, fmt.Errorf("container %q: its init was not started through this handle, so its exit code is unknown here: %w", c.id, protocol.HrVmcomputeInvalidState)
	default:
		return -1, fmt.Errorf("container %q has not exited: %w", c.id, protocol.HrVmcomputeInvalidState)
	}
}

// OOMKilled reports whether the container's exit came from the OOM killer.
func (c *Container) OOMKilled() bool {
	select {
	case <-c.exited:
		return c.info.OOMKilled
	default:
		return false
	}
}

// ExitNotification is the exit notification as the guest sent it.
func (c *Container) ExitNotification() protocol.ContainerNotificationMessage {
	<-c.exited
	return c.note
}

// Delete removes the stopped container's state in the guest.
func (c *Container) Delete(ctx context.Context) error {
	err := c.gc.RPC(ctx, protocol.DeleteContainerState, &protocol.RequestBase{ContainerID: c.id}, nil)
	if err == nil || IsNotFound(err) {
		c.forget()
		c.gc.ForgetNotifications(c.id)
		return nil
	}
	return err
}

// State reports the container's state (a uvmgcs extension).
func (c *Container) State(ctx context.Context) (*protocol.ContainerState, error) {
	props, _, err := c.Properties(ctx, protocol.PropertyTypeUvmgcsState)
	if err != nil {
		return nil, err
	}
	if props.UvmgcsState == nil {
		return nil, Classify(fmt.Errorf("guest sent no state: %w", protocol.HrNotImpl))
	}
	return props.UvmgcsState, nil
}

// ListContainers reports every container in the guest (a uvmgcs extension).
func (gc *GuestConnection) ListContainers(ctx context.Context) ([]protocol.ContainerState, error) {
	q, _ := json.Marshal(protocol.PropertyQuery{PropertyTypes: []string{protocol.PropertyTypeUvmgcsContainers}})
	var resp protocol.GetPropertiesResponse
	if err := gc.RPC(ctx, protocol.GetProperties, &protocol.GetPropertiesRequest{
		RequestBase: protocol.RequestBase{ContainerID: protocol.UVMContainerID},
		Query:       string(q),
	}, &resp); err != nil {
		return nil, err
	}
	var props protocol.Properties
	if err := json.Unmarshal([]byte(resp.Properties), &props); err != nil {
		return nil, fmt.Errorf("decode properties: %w", err)
	}
	return props.UvmgcsContainers, nil
}
