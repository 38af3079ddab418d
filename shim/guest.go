package shim

// Every call into the host library goes through this file: the rest of the
// shim sees only the sandbox, guestContainer and guestProcess interfaces.

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/podnet"
	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/host/vm/qemu"
	"github.com/uvmgcs/gcs/protocol"
)

// vmConfig is the utility VM a group's tasks run in.
type vmConfig struct {
	Kernel, Initrd string
	CPUs           int
	MemoryMiB      int
	KernelArgs     string
	StateDir       string    // sockets and console log; removed at shutdown
	Console        io.Writer // the VM's console, line by line; may be nil
}

// sandbox is the utility VM and its agent, as the shim uses them.
type sandbox interface {
	// Pid is the VM's process on this host (QEMU).
	Pid() int
	// Done is closed when the VM has stopped or its agent is gone.
	Done() <-chan struct{}
	// CreateContainer adds root's disks (or its share) and the binds'
	// shares to the VM, points spec's bind mounts at them and creates
	// the container; its Delete releases them. On error nothing is left.
	CreateContainer(ctx context.Context, id string, spec *specs.Spec, root hostRoot, binds []hostBind) (guestContainer, error)
	// AttachNetwork connects the VM to the pod network CNI set up in the
	// host namespace at nsPath, as guest network namespace nsID.
	AttachNetwork(ctx context.Context, nsPath, nsID string) (podResource, error)
	// MountPodShm mounts a pod's /dev/shm tmpfs at guestPath.
	MountPodShm(ctx context.Context, guestPath string) (podResource, error)
	// Close powers the VM off and reaps it.
	Close(ctx context.Context) error
}

// podResource is what a pod's sandbox holds in the VM: its network
// (*podnet.Attachment: Release removes the guest adapter, the NIC, the tap
// and the redirects) and its /dev/shm.
type podResource interface {
	Release(ctx context.Context) error
}

// podNetworkID is the guest network namespace of pod sandbox id.
func podNetworkID(id string) string { return podnet.NamespaceID("cri-sandbox/" + id) }

// hostRoot is a container's root filesystem as host files: layer disks
// (top first) over a scratch disk, or a directory shared as the root.
type hostRoot struct {
	layers        []string
	scratch       string
	removeScratch bool // made for this container: deleted once released
	shareDir      string
	shareRO       bool
}

// guestContainer is a container in the utility VM.
type guestContainer interface {
	Start(ctx context.Context, io stdioRequest) (guestProcess, error)
	Exec(ctx context.Context, p *specs.Process, io stdioRequest) (guestProcess, error)
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	Update(ctx context.Context, r *specs.LinuxResources) error
	Stats(ctx context.Context) (*stats.Metrics, error)
	Pids(ctx context.Context) ([]uint32, error)
	// Exited is closed when the container's exit notification arrived.
	Exited() <-chan struct{}
	OOMKilled() bool
	Delete(ctx context.Context) error
}

// guestProcess is a process in a container (*host.Process).
type guestProcess interface {
	Pid() int
	Stdin() io.WriteCloser
	Stdout() io.Reader
	Stderr() io.Reader
	CloseStdin() error
	Signal(ctx context.Context, sig int) error
	ResizeConsole(ctx context.Context, height, width uint16) error
	WaitChannel() <-chan struct{}
	ExitCode() (int, error)
	Close() error
}

// stdioRequest says which streams a process gets.
type stdioRequest struct {
	Stdin, Stdout, Stderr, Terminal bool
	Height, Width                   uint16
}

func (r stdioRequest) params() *protocol.ProcessParameters {
	p := &protocol.ProcessParameters{
		EmulateConsole:   r.Terminal,
		CreateStdInPipe:  r.Stdin,
		CreateStdOutPipe: r.Stdout || r.Terminal,
		CreateStdErrPipe: r.Stderr && !r.Terminal,
	}
	if r.Terminal && r.Height > 0 && r.Width > 0 {
		p.ConsoleSize = []uint16{r.Height, r.Width}
	}
	return p
}

// bootVM starts a QEMU utility VM and waits for its agent. The driver
// forks QEMU from an OS thread that lives as long as QEMU, so its
// parent-death signal fires when this process dies and never earlier.
func bootVM(ctx context.Context, cfg vmConfig) (sandbox, error) {
	m := qemu.New(vm.Config{
		Kernel: cfg.Kernel, Initrd: cfg.Initrd, KernelArgs: cfg.KernelArgs,
		MemoryMiB: cfg.MemoryMiB, CPUs: cfg.CPUs, StateDir: cfg.StateDir, ConsoleLog: cfg.Console,
	}, qemu.Options{})
	u, err := uvm.Start(ctx, m, uvm.Options{})
	if err != nil {
		_ = m.Shutdown(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("boot utility VM: %w", err)
	}
	s := &qemuSandbox{u: u, m: m, gc: u.GuestConnection(), dead: make(chan struct{})}
	go func() {
		// The VM is unusable when QEMU exits or the agent's connection
		// drops, whichever the host notices first.
		select {
		case <-m.Done():
		case <-s.gc.Done():
		}
		close(s.dead)
	}()
	return s, nil
}

type qemuSandbox struct {
	u    *uvm.UVM
	m    *qemu.VM
	gc   *host.GuestConnection
	dead chan struct{}
}

func (s *qemuSandbox) Pid() int              { return s.m.Pid() }
func (s *qemuSandbox) Done() <-chan struct{} { return s.dead }

func (s *qemuSandbox) CreateContainer(ctx context.Context, id string, spec *specs.Spec, root hostRoot, binds []hostBind) (_ guestContainer, retErr error) {
	var hold []*uvm.Resource
	defer func() {
		if retErr != nil && hold != nil {
			for i := len(hold) - 1; i >= 0; i-- {
				if err := hold[i].Release(context.WithoutCancel(ctx)); err != nil {
					log.G(ctx).WithError(err).Warn("release a share of a container that failed to create")
				}
			}
		}
	}()
	if root.shareDir != "" {
		r, err := s.u.AddShareAt(ctx, root.shareDir, guestRootPath(id), root.shareRO)
		if err != nil {
			return nil, fmt.Errorf("root filesystem: %w", err)
		}
		hold = append(hold, r)
	}
	for _, b := range binds {
		r, err := s.u.AddShare(ctx, b.dir, b.readOnly)
		if err != nil {
			return nil, fmt.Errorf("bind mount of %s: %w", b.dir, err)
		}
		hold = append(hold, r)
		gp := r.GuestPath()
		if b.file != "" {
			gp += "/" + b.file
		}
		spec.Mounts[b.index].Source = gp
	}
	cfg := uvm.ContainerConfig{Hold: hold}
	if len(root.layers) > 0 {
		cfg.RootFS = uvm.RootFS{Layers: root.layers, Scratch: root.scratch, BlankScratch: true, RemoveScratch: root.removeScratch}
	}
	c, err := s.u.CreateContainer(ctx, id, spec, cfg)
	hold = nil // the container holds them, or released them when it failed
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	return &hostContainer{c: c}, nil
}

func (s *qemuSandbox) AttachNetwork(ctx context.Context, nsPath, nsID string) (podResource, error) {
	at, err := podnet.Attach(ctx, s.gc, s.m, nsPath, podnet.AttachOptions{NamespaceID: nsID})
	if err != nil {
		return nil, err
	}
	return at, nil
}

func (s *qemuSandbox) MountPodShm(ctx context.Context, guestPath string) (podResource, error) {
	if err := s.uvmRun(ctx, `mkdir -p "$0" && mount -t tmpfs -o `+podShmOptions+` shm "$0"`, guestPath); err != nil {
		return nil, fmt.Errorf("the pod's /dev/shm: %w", err)
	}
	return releaseFunc(func(ctx context.Context) error {
		select {
		case <-s.dead:
			return nil // the VM took it
		default:
		}
		return s.uvmRun(ctx, `umount "$0" && rmdir "$0" "${0%/*}"`, guestPath)
	}), nil
}

// uvmRun runs a shell script in the VM (not in a container): arg is its
// $0. Its error output is in the error.
func (s *qemuSandbox) uvmRun(ctx context.Context, script, arg string) error {
	p, err := s.gc.CreateProcess(ctx, &protocol.ProcessParameters{CommandArgs: []string{"/bin/sh", "-c", script, arg}, CreateStdErrPipe: true})
	if err != nil {
		return err
	}
	defer p.Close()
	msg, _ := io.ReadAll(io.LimitReader(p.Stderr(), 4096))
	select {
	case <-p.WaitChannel():
	case <-ctx.Done():
		_ = p.Kill(context.WithoutCancel(ctx))
		return ctx.Err()
	}
	code, err := p.ExitCode()
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("%s %s: exit status %d: %s", script, arg, code, msg)
	}
	return nil
}

// releaseFunc is a podResource.
type releaseFunc func(ctx context.Context) error

func (f releaseFunc) Release(ctx context.Context) error { return f(ctx) }

func (s *qemuSandbox) Close(ctx context.Context) error { return s.u.Shutdown(ctx) }

// guestRootPath is where a container's root filesystem is assembled.
func guestRootPath(id string) string { return uvm.RootPath(id) }

type hostContainer struct{ c *uvm.Container }

func (h *hostContainer) Start(ctx context.Context, io stdioRequest) (guestProcess, error) {
	p, err := h.c.CreateProcess(ctx, io.params())
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (h *hostContainer) Exec(ctx context.Context, sp *specs.Process, io stdioRequest) (guestProcess, error) {
	p, err := h.c.Exec(ctx, sp, io.params())
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (h *hostContainer) Pause(ctx context.Context) error  { return h.c.Pause(ctx) }
func (h *hostContainer) Resume(ctx context.Context) error { return h.c.Resume(ctx) }
func (h *hostContainer) Update(ctx context.Context, r *specs.LinuxResources) error {
	return h.c.Update(ctx, r)
}

func (h *hostContainer) Stats(ctx context.Context) (*stats.Metrics, error) { return h.c.Stats(ctx) }

func (h *hostContainer) Pids(ctx context.Context) ([]uint32, error) {
	props, _, err := h.c.Properties(ctx, protocol.PropertyTypeProcessList)
	if err != nil {
		return nil, err
	}
	pids := make([]uint32, 0, len(props.ProcessList))
	for _, p := range props.ProcessList {
		pids = append(pids, p.ProcessID)
	}
	return pids, nil
}

func (h *hostContainer) Exited() <-chan struct{}          { return h.c.WaitChannel() }
func (h *hostContainer) OOMKilled() bool                  { return h.c.OOMKilled() }
func (h *hostContainer) Delete(ctx context.Context) error { return h.c.Delete(ctx) }
