package shim

// Every call into the host library goes through this file: the rest of the
// shim sees only the sandbox, guestContainer and guestProcess interfaces.

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
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

// disk is a hot-plugged SCSI disk.
type disk struct{ Controller, LUN uint8 }

// sandbox is the utility VM and its agent, as the shim uses them.
type sandbox interface {
	// Pid is the VM's process on this host (QEMU).
	Pid() int
	// Done is closed when the VM has stopped or its agent is gone.
	Done() <-chan struct{}
	// AttachDisk hot-plugs the file at path; DetachDisk has the guest let
	// go of it and unplugs it.
	AttachDisk(ctx context.Context, path string, readOnly bool) (disk, error)
	DetachDisk(ctx context.Context, d disk) error
	// MountDisk mounts d at guestPath (formatting a blank disk when
	// format); UnmountDisk undoes it. GuestLayerPath and GuestScratchPath
	// name where a disk is mounted.
	MountDisk(ctx context.Context, d disk, guestPath string, readOnly, format bool) error
	UnmountDisk(ctx context.Context, d disk, guestPath string, readOnly bool) error
	GuestLayerPath(d disk) string
	GuestScratchPath(d disk) string
	// CombineLayers mounts an overlay of layers (top first) over scratch
	// at root; UncombineLayers unmounts it.
	CombineLayers(ctx context.Context, layers []string, scratch, root string) error
	UncombineLayers(ctx context.Context, layers []string, scratch, root string) error
	// ShareDirectory serves the host directory dir to the guest over 9p
	// and mounts it at guestPath; release unmounts it and stops serving.
	ShareDirectory(ctx context.Context, dir, guestPath string, readOnly bool) (release func(context.Context) error, err error)
	// CreateContainer creates a container whose root is in place.
	CreateContainer(ctx context.Context, id string, spec *specs.Spec) (guestContainer, error)
	// Close powers the VM off and reaps it.
	Close(ctx context.Context) error
}

// guestContainer is a container in the utility VM.
type guestContainer interface {
	Start(ctx context.Context, io stdioRequest) (guestProcess, error)
	Exec(ctx context.Context, p *specs.Process, io stdioRequest) (guestProcess, error)
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	Update(ctx context.Context, r *specs.LinuxResources) error
	Stats(ctx context.Context) (*protocol.Metrics, error)
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

func (s *qemuSandbox) AttachDisk(ctx context.Context, path string, readOnly bool) (disk, error) {
	d, err := s.m.AddSCSIDisk(ctx, path, readOnly)
	if err != nil {
		return disk{}, fmt.Errorf("attach %s: %w", path, err)
	}
	return disk{Controller: d.Controller, LUN: d.LUN}, nil
}

func (s *qemuSandbox) DetachDisk(ctx context.Context, d disk) error {
	gerr := s.gc.RemoveSCSIDevice(ctx, d.Controller, d.LUN)
	herr := s.m.RemoveSCSIDisk(ctx, vm.Disk{Controller: d.Controller, LUN: d.LUN})
	return toErrdefs(errors.Join(gerr, herr))
}

func (s *qemuSandbox) mvd(d disk, guestPath string, readOnly, format bool) protocol.MappedVirtualDisk {
	return protocol.MappedVirtualDisk{Controller: d.Controller, Lun: d.LUN, MountPath: guestPath, ReadOnly: readOnly, EnsureFilesystem: format}
}

func (s *qemuSandbox) MountDisk(ctx context.Context, d disk, guestPath string, readOnly, format bool) error {
	return toErrdefs(s.gc.AddSCSIDisk(ctx, s.mvd(d, guestPath, readOnly, format)))
}

func (s *qemuSandbox) UnmountDisk(ctx context.Context, d disk, guestPath string, readOnly bool) error {
	return toErrdefs(s.gc.RemoveSCSIDisk(ctx, s.mvd(d, guestPath, readOnly, false)))
}

func (s *qemuSandbox) GuestLayerPath(d disk) string {
	return host.LayerPath(protocol.MappedVirtualDisk{Controller: d.Controller, Lun: d.LUN})
}

func (s *qemuSandbox) GuestScratchPath(d disk) string {
	return host.ScratchPath(protocol.MappedVirtualDisk{Controller: d.Controller, Lun: d.LUN})
}

func combined(layers []string, scratch, root string) protocol.CombinedLayers {
	c := protocol.CombinedLayers{ContainerRootPath: root, ScratchPath: scratch}
	for _, l := range layers {
		c.Layers = append(c.Layers, protocol.Layer{Path: l})
	}
	return c
}

func (s *qemuSandbox) CombineLayers(ctx context.Context, layers []string, scratch, root string) error {
	return toErrdefs(s.gc.CombineLayers(ctx, combined(layers, scratch, root)))
}

func (s *qemuSandbox) UncombineLayers(ctx context.Context, layers []string, scratch, root string) error {
	return toErrdefs(s.gc.RemoveCombinedLayers(ctx, combined(layers, scratch, root)))
}

func (s *qemuSandbox) ShareDirectory(ctx context.Context, dir, guestPath string, readOnly bool) (func(context.Context) error, error) {
	sh, err := s.gc.ShareDirectory(ctx, dir, guestPath, readOnly)
	if err != nil {
		return nil, toErrdefs(err)
	}
	return func(ctx context.Context) error { return toErrdefs(sh.Release(ctx)) }, nil
}

func (s *qemuSandbox) CreateContainer(ctx context.Context, id string, spec *specs.Spec) (guestContainer, error) {
	c, err := s.gc.CreateContainer(ctx, id, spec)
	if err != nil {
		return nil, toErrdefs(err)
	}
	return &hostContainer{c: c}, nil
}

func (s *qemuSandbox) Close(ctx context.Context) error { return s.u.Shutdown(ctx) }

// guestRootPath is where a container's root filesystem is assembled.
func guestRootPath(id string) string { return host.GuestBundleRoot + "/" + id + "/rootfs" }

// guestSharePath is where the n-th host directory a container's bind
// mounts name is mounted in the guest.
func guestSharePath(id string, n int) string { return fmt.Sprintf("/run/mounts/shares/%s/%d", id, n) }

type hostContainer struct{ c *host.Container }

func (h *hostContainer) Start(ctx context.Context, io stdioRequest) (guestProcess, error) {
	p, err := h.c.CreateProcess(ctx, io.params())
	if err != nil {
		return nil, toErrdefs(err)
	}
	return p, nil
}

func (h *hostContainer) Exec(ctx context.Context, sp *specs.Process, io stdioRequest) (guestProcess, error) {
	p, err := h.c.Exec(ctx, sp, io.params())
	if err != nil {
		return nil, toErrdefs(err)
	}
	return p, nil
}

func (h *hostContainer) Pause(ctx context.Context) error  { return toErrdefs(h.c.Pause(ctx)) }
func (h *hostContainer) Resume(ctx context.Context) error { return toErrdefs(h.c.Resume(ctx)) }
func (h *hostContainer) Update(ctx context.Context, r *specs.LinuxResources) error {
	return toErrdefs(h.c.Update(ctx, r))
}

func (h *hostContainer) Stats(ctx context.Context) (*protocol.Metrics, error) {
	_, m, err := h.c.Properties(ctx, protocol.PropertyTypeStatistics)
	if err != nil {
		return nil, toErrdefs(err)
	}
	if m == nil {
		return nil, fmt.Errorf("the guest sent no statistics: %w", errdefs.ErrUnavailable)
	}
	return m, nil
}

func (h *hostContainer) Pids(ctx context.Context) ([]uint32, error) {
	props, _, err := h.c.Properties(ctx, protocol.PropertyTypeProcessList)
	if err != nil {
		return nil, toErrdefs(err)
	}
	pids := make([]uint32, 0, len(props.ProcessList))
	for _, p := range props.ProcessList {
		pids = append(pids, p.ProcessID)
	}
	return pids, nil
}

func (h *hostContainer) Exited() <-chan struct{}          { return h.c.WaitChannel() }
func (h *hostContainer) OOMKilled() bool                  { return h.c.OOMKilled() }
func (h *hostContainer) Delete(ctx context.Context) error { return toErrdefs(h.c.Delete(ctx)) }

// toErrdefs maps the library's errors to containerd's error kinds, keeping
// the message and the chain.
func toErrdefs(err error) error {
	switch {
	case err == nil:
		return nil
	case host.IsNotFound(err):
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	case host.IsAlreadyExists(err):
		return fmt.Errorf("%w: %w", errdefs.ErrAlreadyExists, err)
	case host.IsInvalidState(err):
		return fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	case errors.Is(err, protocol.HrNotImpl):
		return fmt.Errorf("%w: %w", errdefs.ErrNotImplemented, err)
	case errors.Is(err, protocol.HrInvalidArg):
		return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	return err
}
