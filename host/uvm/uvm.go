// Package uvm owns a running utility VM as the host sees it: the machine a
// VM driver booted, the negotiated GuestConnection to its agent, and every
// resource added to it. Disks, VPMem devices, shares and NICs are added
// through the UVM, which attaches them on the host, mounts or configures
// them in the guest, counts references (two containers on one layer file
// share one attachment and one guest mount) and hands back a Resource
// whose Release undoes it all in reverse order. A container created
// through the UVM carries its resources and releases them on Delete.
//
// A UVM outlives the process that started it when the machine does (a
// long-lived VM, see host/uvm/named): Attach reaches it again, reloads the
// resource table from Options.StateFile and reopens its containers.
package uvm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/transport"
)

// Machine is what a UVM needs of a VM driver; host/vm's VM satisfies it.
type Machine interface {
	// Start boots the machine; its agent's ports are reachable on return.
	Start(ctx context.Context) error
	// Agent listens on the ports the agent dials.
	Agent() transport.Listener
	AddSCSIDisk(ctx context.Context, path string, readOnly bool) (vm.Disk, error)
	RemoveSCSIDisk(ctx context.Context, d vm.Disk) error
	AddPMem(ctx context.Context, path string) (uint32, error)
	Shutdown(ctx context.Context) error
	Done() <-chan struct{}
}

var _ Machine = vm.VM(nil)

// Options configure a UVM.
type Options struct {
	// Host configures the guest connection; its IO is the machine's Agent.
	Host host.Config
	// StateFile keeps the resource table, so that a process that attaches
	// later (Attach) can release what this one added. None if empty.
	StateFile string
	// Sharer offers host directories to the guest (AddShare, container
	// mounts); Plan9 (a 9p server on an agent-channel port) if nil.
	Sharer Sharer
}

// UVM is a booted utility VM with a negotiated agent and the resources
// added to it. It is safe for concurrent use.
type UVM struct {
	m    Machine
	gc   *host.GuestConnection
	opts Options

	mu   sync.Mutex
	res  map[string]*resource // by key
	ctrs map[string][]string  // container id → keys of its resources, in order taken

	// Timings of the boot.
	Booted     time.Duration // Start: machine launched
	Negotiated time.Duration // Start until the agent negotiated
}

// Start boots m and waits for its agent to connect and negotiate.
func Start(ctx context.Context, m Machine, opts Options) (_ *UVM, retErr error) {
	t0 := time.Now()
	if err := m.Start(ctx); err != nil {
		return nil, fmt.Errorf("start VM: %w", err)
	}
	booted := time.Since(t0)
	defer func() {
		if retErr != nil {
			m.Shutdown(context.WithoutCancel(ctx))
		}
	}()
	u, err := connect(ctx, m, opts)
	if err != nil {
		return nil, err
	}
	u.Booted, u.Negotiated = booted, time.Since(t0)
	if r, ok := m.(vm.BootReleaser); ok {
		if err := r.ReleaseBootFiles(); err != nil {
			log.G(ctx).WithError(err).Debug("release boot files")
		}
	}
	if err := u.save(); err != nil {
		u.gc.Close()
		return nil, err
	}
	log.G(ctx).WithFields(map[string]any{"booted": u.Booted, "negotiated": u.Negotiated}).Debug("utility VM ready")
	return u, nil
}

// Attach reaches the agent of m, a machine that is already running (a
// long-lived VM another process started: qemu.Attach), takes the agent's
// next bridge connection and reloads the resource table from
// opts.StateFile. Containers are reopened with OpenContainer.
func Attach(ctx context.Context, m Machine, opts Options) (*UVM, error) {
	u, err := connect(ctx, m, opts)
	if err != nil {
		return nil, err
	}
	if err := u.load(); err != nil {
		u.gc.Close()
		return nil, err
	}
	return u, nil
}

// connect accepts the agent on m's listener and negotiates.
func connect(ctx context.Context, m Machine, opts Options) (*UVM, error) {
	io := m.Agent()
	if io == nil {
		return nil, fmt.Errorf("the VM has no agent channel: %w", errdefs.ErrUnavailable)
	}
	l, err := io.Listen(transport.BridgePort)
	if err != nil {
		return nil, fmt.Errorf("listen for the agent: %w", err)
	}
	defer l.Close()
	cfg := opts.Host
	cfg.IO = io
	gc, err := host.Accept(ctx, l, m.Done(), cfg)
	if err != nil {
		return nil, err
	}
	return &UVM{m: m, gc: gc, opts: opts, res: make(map[string]*resource), ctrs: make(map[string][]string)}, nil
}

// GuestConnection is the negotiated connection to the agent.
func (u *UVM) GuestConnection() *host.GuestConnection { return u.gc }

// Machine is the VM driver's handle.
func (u *UVM) Machine() Machine { return u.m }

// Done is closed when the VM has stopped.
func (u *UVM) Done() <-chan struct{} { return u.m.Done() }

// Shutdown asks the agent to power the VM off, then has the driver make
// sure it is gone. Resources die with the VM; the state file is removed.
// It is safe to call more than once.
func (u *UVM) Shutdown(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_ = u.gc.ShutdownVM(sctx)
	cancel()
	u.gc.Close()
	err := u.m.Shutdown(ctx)
	u.mu.Lock()
	u.res, u.ctrs = map[string]*resource{}, map[string][]string{}
	u.mu.Unlock()
	u.removeState()
	return err
}

// Detach closes this process's connection to the agent (and lets go of a
// machine that was attached: qemu's Detach) and leaves the VM and its
// resources as they are, for a later Attach.
func (u *UVM) Detach() error {
	err := u.gc.Close()
	if d, ok := u.m.(interface{ Detach() error }); ok {
		err = errors.Join(err, d.Detach())
	}
	return err
}
