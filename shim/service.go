// Package shim is the containerd runtime v2 task service of
// containerd-shim-uvmgcs-v1: the tasks of one group (a pod, or containers
// sharing the io.containerd.runc.v2.group annotation) run as containers in
// one utility VM, which the service boots on the first Create and powers off
// at the last Shutdown. Root filesystems become cached erofs layer disks
// plus a scratch disk per container (rootfs.go, layers/); task events go to
// containerd through a queue that survives its restarts (events.go). All
// calls into the host library are in guest.go.
package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/uvmgcs/gcs/shim/layers"
)

// Version is reported by Connect and -v.
const Version = "0.1.0"

// vmBootTimeout bounds a VM's boot up to its agent's negotiation (TCG).
const vmBootTimeout = 2 * time.Minute

// oomWait is how long an init's exit waits for the container's exit
// notification, which says whether the OOM killer ended it.
const oomWait = 2 * time.Second

// validID is containerd's identifier grammar.
var validID = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

const maxIDLength = 76

// EventPublisher is where task events go (*Publisher).
type EventPublisher interface {
	Publish(ctx context.Context, topic string, ev proto.Message)
}

// PendingPath is the file that says a task of the group was handed the
// shim's address and has not been created yet (the shim must not exit).
func PendingPath(groupDir, id string) string {
	return filepath.Join(groupDir, "pending-"+id)
}

// Options configure a Service.
type Options struct {
	// StateDir is the group's directory on the host: the VM's sockets
	// (vm/) and qemu.pid.
	StateDir  string
	Namespace string // containerd's, for binary:// loggers
	Publisher EventPublisher
}

// Service implements containerd's task v2 API for one group.
type Service struct {
	opts Options
	ctx  context.Context

	bootMu sync.Mutex // serialises the VM's boot
	mu     sync.Mutex
	sb     sandbox
	cfg    Config
	cache  *layers.Cache
	cgroup vmCgroup // the pod's, on the host; nil outside a pod
	tasks  map[string]*shimTask

	shutdown chan struct{} // a Shutdown found no task left
}

var _ taskAPI.TTRPCTaskService = (*Service)(nil)

// New returns a service; ctx carries its logger and outlives requests.
func New(ctx context.Context, opts Options) *Service {
	return &Service{opts: opts, ctx: ctx, tasks: make(map[string]*shimTask), shutdown: make(chan struct{}, 1)}
}

// ShutdownRequested receives when containerd asked the service to shut
// down and no task was left. The caller decides (Idle) whether to exit:
// another task of the group may be on its way.
func (s *Service) ShutdownRequested() <-chan struct{} { return s.shutdown }

// Idle reports whether the service holds no task.
func (s *Service) Idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tasks) == 0
}

func (s *Service) publish(topic string, ev proto.Message) {
	if s.opts.Publisher != nil {
		s.opts.Publisher.Publish(s.ctx, topic, ev)
	}
}

func (s *Service) getTask(id string) (*shimTask, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[id]
	if !ok {
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "task %q", id)
	}
	return t, nil
}

func (s *Service) getProcess(id, execID string) (*shimTask, *process, error) {
	t, err := s.getTask(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := t.process(execID)
	if err != nil {
		return nil, nil, errgrpc.ToGRPC(err)
	}
	return t, p, nil
}

// Create boots the group's VM if needed, mounts the task's root
// filesystem in it and creates the container; its init starts with Start.
func (s *Service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	if len(r.ID) > maxIDLength || !validID.MatchString(r.ID) {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "task id %q", r.ID)
	}
	defer os.Remove(PendingPath(s.opts.StateDir, r.ID))
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotImplemented, "restore from a checkpoint")
	}
	s.mu.Lock()
	_, exists := s.tasks[r.ID]
	s.mu.Unlock()
	if exists {
		return nil, errgrpc.ToGRPCf(errdefs.ErrAlreadyExists, "task %q", r.ID)
	}
	stdio := stdioPaths{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	if err := stdio.validate(); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	pod, nsPath, err := s.podOf(r.ID, spec)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	gs, binds, err := guestSpec(spec, guestRootPath(r.ID), pod)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	rl, err := parseRootfs(r.Rootfs, r.Bundle, spec.Root)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	sb, cache, cfg, err := s.ensureVM(ctx, r.Options, spec)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	held, err := holdPod(ctx, sb, spec, r.ID, pod, nsPath)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	defer func() {
		if retErr != nil {
			releaseAll(context.WithoutCancel(ctx), held)
		}
	}()
	root, err := hostFiles(ctx, rl, r.Bundle, cfg.ScratchMiB, cache)
	if err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("root filesystem: %w", err))
	}
	gc, err := sb.CreateContainer(ctx, r.ID, gs, root, binds)
	if err != nil {
		removeRootFiles(r.Bundle)
		return nil, errgrpc.ToGRPC(err)
	}
	t := &shimTask{id: r.ID, bundle: r.Bundle, spec: spec, pod: pod, held: held, gc: gc, init: newProcess(r.ID, "", stdio, nil), execs: make(map[string]*process)}
	s.mu.Lock()
	s.tasks[r.ID] = t
	s.mu.Unlock()
	pid := uint32(sb.Pid())
	s.publish(TopicTaskCreate, &eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs, Pid: pid,
		IO: &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
	})
	return &taskAPI.CreateTaskResponse{Pid: pid}, nil
}

// Start starts the init or an exec.
func (s *Service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	t, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	launch := func(io stdioRequest) (guestProcess, error) { return t.gc.Start(ctx, io) }
	if r.ExecID == "" {
		p.settle = func() { s.settle(t) }
	}
	if r.ExecID != "" {
		t.mu.Lock()
		paused := t.paused
		t.mu.Unlock()
		if paused {
			return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "task %q is paused", r.ID)
		}
		if t.init.isExited() {
			return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "task %q has exited", r.ID)
		}
		launch = func(io stdioRequest) (guestProcess, error) { return t.gc.Exec(ctx, p.spec, io) }
	}
	if err := p.start(s.ctx, s.opts.Namespace, launch, func(p *process) { s.exited(t, p) }); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	pid := s.vmPid()
	if r.ExecID == "" {
		s.publish(TopicTaskStart, &eventstypes.TaskStart{ContainerID: r.ID, Pid: pid})
	} else {
		s.publish(TopicTaskExecStarted, &eventstypes.TaskExecStarted{ContainerID: r.ID, ExecID: r.ExecID, Pid: pid})
	}
	return &taskAPI.StartResponse{Pid: pid}, nil
}

// settle runs when a task's init has exited, before its exit is
// recorded (and Wait answers): it waits for the container's exit
// notification, which says whether the OOM killer ended it, and then
// publishes TaskOOM, so that containerd's CRI plugin has the OOM before
// the exit.
func (s *Service) settle(t *shimTask) {
	select {
	case <-t.gc.Exited():
	case <-time.After(oomWait):
	}
	if t.gc.OOMKilled() {
		s.publish(TopicTaskOOM, &eventstypes.TaskOOM{ContainerID: t.id})
	}
}

// exited reports a process's exit: TaskExit, after the output drained
// (and, for an init, after settle).
func (s *Service) exited(t *shimTask, p *process) {
	s.published(t, p)
}

func (s *Service) published(t *shimTask, p *process) {
	id := p.execID
	if id == "" {
		id = t.id
	}
	p.mu.Lock()
	code, at := p.exitCode, p.exitedAt
	p.mu.Unlock()
	s.publish(TopicTaskExit, &eventstypes.TaskExit{ContainerID: t.id, ID: id, Pid: s.vmPid(), ExitStatus: code, ExitedAt: timestamppb.New(at)})
}

// Delete removes an exited exec, or an exited (or never started) task
// with its container and root filesystem.
func (s *Service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	t, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	running := p.started && p.status != task.Status_STOPPED
	p.mu.Unlock()
	if running {
		return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "process %s/%s is running", r.ID, r.ExecID)
	}
	p.setExited(0) // never started: nothing ran
	p.mu.Lock()
	code, at := p.exitCode, p.exitedAt
	p.mu.Unlock()
	pid := s.vmPid()
	resp := &taskAPI.DeleteResponse{Pid: pid, ExitStatus: code, ExitedAt: timestamppb.New(at)}
	if r.ExecID != "" {
		t.mu.Lock()
		delete(t.execs, r.ExecID)
		t.mu.Unlock()
		return resp, nil
	}
	s.mu.Lock()
	sb := s.sb
	s.mu.Unlock()
	select {
	case <-sb.Done():
		// The VM is gone, and the container with it.
	default:
		// Delete removes the container, then releases its root
		// filesystem and shares.
		if err := t.gc.Delete(ctx); err != nil && !stopped(sb) {
			return nil, errgrpc.ToGRPC(fmt.Errorf("delete container %s: %w", r.ID, err))
		}
	}
	removeRootFiles(t.bundle)
	// After the sandbox container: the pod's /dev/shm, and the NIC, the
	// tap and the redirects in the pod's namespace before CNI tears it
	// down.
	releaseAll(ctx, t.held)
	s.mu.Lock()
	delete(s.tasks, r.ID)
	s.mu.Unlock()
	s.publish(TopicTaskDelete, &eventstypes.TaskDelete{ContainerID: r.ID, Pid: pid, ExitStatus: code, ExitedAt: resp.ExitedAt, ID: r.ID})
	return resp, nil
}

// stopped reports whether the VM is gone (a request that failed may have
// failed because it died: give its watcher a moment to notice).
func stopped(sb sandbox) bool {
	select {
	case <-sb.Done():
		return true
	case <-time.After(100 * time.Millisecond):
		return false
	}
}

// Exec adds a process to a running task; Start starts it.
func (s *Service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*emptypb.Empty, error) {
	t, err := s.getTask(r.ID)
	if err != nil {
		return nil, err
	}
	if len(r.ExecID) > maxIDLength || !validID.MatchString(r.ExecID) {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "exec id %q", r.ExecID)
	}
	if t.init.isExited() {
		return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "task %q has exited", r.ID)
	}
	stdio := stdioPaths{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	if err := stdio.validate(); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if r.Spec == nil || len(r.Spec.GetValue()) > maxSpecSize {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "exec %q: a process spec of at most %d bytes is required", r.ExecID, maxSpecSize)
	}
	var ps specs.Process
	if err := json.Unmarshal(r.Spec.GetValue(), &ps); err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "exec %q: process spec: %v", r.ExecID, err)
	}
	if len(ps.Args) == 0 {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "exec %q: no command", r.ExecID)
	}
	ps.Terminal = r.Terminal
	t.mu.Lock()
	if _, ok := t.execs[r.ExecID]; ok {
		t.mu.Unlock()
		return nil, errgrpc.ToGRPCf(errdefs.ErrAlreadyExists, "exec %q in task %q", r.ExecID, r.ID)
	}
	t.execs[r.ExecID] = newProcess(r.ID, r.ExecID, stdio, &ps)
	t.mu.Unlock()
	s.publish(TopicTaskExecAdded, &eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	return &emptypb.Empty{}, nil
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptypb.Empty, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	gp, err := p.guest()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if r.Height > 0xFFFF || r.Width > 0xFFFF {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "terminal size %dx%d", r.Width, r.Height)
	}
	if err := gp.ResizeConsole(ctx, uint16(r.Height), uint16(r.Width)); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*emptypb.Empty, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Stdin {
		p.mu.Lock()
		rl, gp := p.relay, p.gp
		p.mu.Unlock()
		if rl != nil && rl.stdin != nil {
			rl.closeStdin() // ends the guest's stdin after the drain
		} else if gp != nil {
			_ = gp.CloseStdin()
		}
	}
	return &emptypb.Empty{}, nil
}

// State reports a process's state.
func (s *Service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	t, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	paused := t.paused
	t.mu.Unlock()
	st, code, at := p.state(paused)
	return &taskAPI.StateResponse{
		ID: r.ID, ExecID: r.ExecID, Bundle: t.bundle, Pid: s.vmPid(), Status: st,
		Stdin: p.stdio.Stdin, Stdout: p.stdio.Stdout, Stderr: p.stdio.Stderr, Terminal: p.stdio.Terminal,
		ExitStatus: code, ExitedAt: timestamppb.New(at),
	}, nil
}

// Pause freezes the task's container.
func (s *Service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptypb.Empty, error) {
	t, err := s.getTask(r.ID)
	if err != nil {
		return nil, err
	}
	if err := t.gc.Pause(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	t.mu.Lock()
	t.paused = true
	t.mu.Unlock()
	s.publish(TopicTaskPaused, &eventstypes.TaskPaused{ContainerID: r.ID})
	return &emptypb.Empty{}, nil
}

// Resume thaws the task's container.
func (s *Service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptypb.Empty, error) {
	t, err := s.getTask(r.ID)
	if err != nil {
		return nil, err
	}
	if err := t.gc.Resume(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	t.mu.Lock()
	t.paused = false
	t.mu.Unlock()
	s.publish(TopicTaskResumed, &eventstypes.TaskResumed{ContainerID: r.ID})
	return &emptypb.Empty{}, nil
}

// Checkpoint is not supported: a VM's container cannot be checkpointed.
func (s *Service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, errgrpc.ToGRPCf(errdefs.ErrNotImplemented, "checkpoint of task %q", r.ID)
}

// Kill signals a process, or with All every process of the task.
func (s *Service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptypb.Empty, error) {
	t, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Signal == 0 || r.Signal > 64 {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "signal %d", r.Signal)
	}
	targets := []*process{p}
	if r.All && r.ExecID == "" {
		t.mu.Lock()
		targets = targets[:0]
		for _, e := range t.execs {
			targets = append(targets, e)
		}
		t.mu.Unlock()
		targets = append(targets, t.init)
	}
	for _, q := range targets {
		if err := s.signal(ctx, t, q, int(r.Signal)); err != nil && (q == p || !errdefs.IsNotFound(err)) {
			return nil, errgrpc.ToGRPC(err)
		}
	}
	return &emptypb.Empty{}, nil
}

func (s *Service) signal(ctx context.Context, t *shimTask, p *process, sig int) error {
	p.mu.Lock()
	started, gp, stopped := p.started, p.gp, p.status == task.Status_STOPPED
	p.mu.Unlock()
	switch {
	case stopped:
		return fmt.Errorf("process %s/%s already finished: %w", p.taskID, p.execID, errdefs.ErrNotFound)
	case !started:
		// Nothing runs yet: the signal ends it, as it would a runc init
		// waiting to be started.
		if p.setExited(uint32(128 + sig)) {
			s.published(t, p)
		}
		return nil
	case gp == nil:
		return fmt.Errorf("process %s/%s is starting: %w", p.taskID, p.execID, errdefs.ErrFailedPrecondition)
	}
	return gp.Signal(ctx, sig)
}

// Pids lists the processes of the task's container (pids in the VM).
func (s *Service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	t, err := s.getTask(r.ID)
	if err != nil {
		return nil, err
	}
	if t.init.isExited() {
		return &taskAPI.PidsResponse{}, nil
	}
	pids, err := t.gc.Pids(ctx)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp := &taskAPI.PidsResponse{}
	for _, pid := range pids {
		resp.Processes = append(resp.Processes, &task.ProcessInfo{Pid: pid})
	}
	return resp, nil
}

// Update applies new resource limits to the task's container.
func (s *Service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptypb.Empty, error) {
	t, err := s.getTask(r.ID)
	if err != nil {
		return nil, err
	}
	if r.Resources == nil || len(r.Resources.GetValue()) > maxSpecSize {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "update of %q: resources of at most %d bytes are required", r.ID, maxSpecSize)
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "update of %q: resources: %v", r.ID, err)
	}
	if err := t.gc.Update(ctx, &res); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Wait blocks until the process has exited.
func (s *Service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, errgrpc.ToGRPC(ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return &taskAPI.WaitResponse{ExitStatus: p.exitCode, ExitedAt: timestamppb.New(p.exitedAt)}, nil
}

// Stats returns the container's cgroup statistics in the VM.
func (s *Service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	t, err := s.getTask(r.ID)
	if err != nil {
		return nil, err
	}
	m, err := t.gc.Stats(ctx)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	a, err := typeurl.MarshalAny(m)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &taskAPI.StatsResponse{Stats: &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()}}, nil
}

// Connect reports the shim's and the VM's pids.
func (s *Service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	if r.ID != "" {
		if _, err := s.getTask(r.ID); err != nil {
			return nil, err
		}
	}
	return &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: s.vmPid(), Version: Version}, nil
}

// Shutdown ends the service when no task is left in the group.
func (s *Service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	n := len(s.tasks)
	s.mu.Unlock()
	if n == 0 {
		select {
		case s.shutdown <- struct{}{}:
		default:
		}
	}
	return &emptypb.Empty{}, nil
}
