package podnet

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/host/vm/qemu"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
)

// Guest is the agent's side of a pod network; *host.GuestConnection is one.
type Guest interface {
	AddNetworkNamespace(ctx context.Context, id string) error
	RemoveNetworkNamespace(ctx context.Context, id string) error
	AddNetworkAdapter(ctx context.Context, a protocol.NetworkAdapter) error
	RemoveNetworkAdapter(ctx context.Context, a protocol.NetworkAdapter) error
}

// NICs hot-plugs NICs on taps; *qemu.VM is one.
type NICs interface {
	AddTapNIC(ctx context.Context, n qemu.TapNIC) error
	RemoveTapNIC(ctx context.Context, mac string) error
	// Done is closed when the VM has stopped.
	Done() <-chan struct{}
}

// AttachOptions say how a pod network appears in the guest.
type AttachOptions struct {
	Options
	// NamespaceID is the guest network namespace (a GUID) the pod's
	// containers join (spec.Windows.Network.NetworkNamespace);
	// NamespaceID(nsPath) if empty.
	NamespaceID string
	// AdapterID names the guest adapter (a GUID); derived from the
	// namespace and interface if empty.
	AdapterID string
	// DNS is the resolver configuration of the guest namespace.
	DNS DNS
}

// Attachment is a pod network namespace attached to a VM: the redirects
// and tap in the pod's namespace, the VM's NIC on the tap, and the guest
// adapter in its namespace.
type Attachment struct {
	Endpoint *Endpoint
	Adapter  protocol.NetworkAdapter // as sent to the guest

	g      Guest
	unplug func(context.Context) error
	vmDone <-chan struct{}

	mu       sync.Mutex
	released bool
	err      error
}

// Plug returns a function that plugs the VM into the tap: a NIC with the
// pod interface's MAC and MTU on it (the VM takes over the tap and the
// Endpoint's descriptor is closed). It returns the MAC and an unplug that
// removes the NIC and then Releases the Endpoint; a VM that has stopped is
// no error there. From the call on, the plug owns the Endpoint: a failed
// plug releases it. Its form is what host/uvm's AddNIC takes.
func (e *Endpoint) Plug(nics NICs) func(context.Context) (string, func(context.Context) error, error) {
	return func(ctx context.Context) (string, func(context.Context) error, error) {
		mac := e.Config.MAC.String()
		if err := nics.AddTapNIC(ctx, qemu.TapNIC{Tap: e.TapFile(), MAC: mac, MTU: e.Config.MTU}); err != nil {
			if rerr := e.Release(context.WithoutCancel(ctx)); rerr != nil {
				err = fmt.Errorf("%w (and release the tap: %v)", err, rerr)
			}
			return "", nil, fmt.Errorf("pod network %s: %w", e.NetNS, err)
		}
		if err := e.CloseTap(); err != nil {
			log.G(ctx).WithError(err).Warn("close the tap after handing it to the VM")
		}
		return mac, unplug(nics, e, mac), nil
	}
}

// unplug removes the NIC with mac, then releases e.
func unplug(nics NICs, e *Endpoint, mac string) func(context.Context) error {
	return func(ctx context.Context) error {
		err := nics.RemoveTapNIC(ctx, mac)
		if errors.Is(err, vm.ErrNotRunning) {
			err = nil // the VM, and its end of the tap, are gone
		} else if err != nil {
			err = fmt.Errorf("remove the NIC: %w", err)
		}
		return errors.Join(err, e.Release(ctx))
	}
}

// Attach connects the VM to the pod network CNI set up in the namespace at
// nsPath: Setup there, a NIC on the tap (Plug), and the guest's
// NetworkNamespace and Network requests giving the adapter the pod
// interface's MAC, addresses and routes. On error nothing is left.
func Attach(ctx context.Context, g Guest, nics NICs, nsPath string, o AttachOptions) (*Attachment, error) {
	if o.NamespaceID == "" {
		o.NamespaceID = NamespaceID(nsPath)
	}
	ep, err := Setup(ctx, nsPath, o.Options)
	if err != nil {
		return nil, err
	}
	if o.AdapterID == "" {
		o.AdapterID = NamespaceID(o.NamespaceID + "/" + ep.Interface)
	}
	at := &Attachment{Endpoint: ep, Adapter: ep.Config.Adapter(o.NamespaceID, o.AdapterID, o.DNS), g: g, vmDone: nics.Done()}
	mac, unplug, err := ep.Plug(nics)(ctx)
	if err != nil {
		return nil, err
	}
	at.unplug = unplug
	err = g.AddNetworkNamespace(ctx, o.NamespaceID)
	if err == nil {
		err = g.AddNetworkAdapter(ctx, at.Adapter)
	}
	if err != nil {
		undo := context.WithoutCancel(ctx)
		if rerr := g.RemoveNetworkNamespace(undo, o.NamespaceID); rerr != nil {
			log.G(ctx).WithError(rerr).Warn("remove the guest network namespace after a failed attach")
		}
		if rerr := unplug(undo); rerr != nil {
			log.G(ctx).WithError(rerr).Warn("unplug the NIC after a failed attach")
		}
		return nil, fmt.Errorf("attach pod network %s: configure the guest adapter: %w", nsPath, err)
	}
	log.G(ctx).WithField("netns", nsPath).WithField("guest-netns", o.NamespaceID).WithField("mac", mac).Info("pod network attached")
	return at, nil
}

// Reopen returns the Attachment that Attach made of the namespace at
// nsPath with adapter (Attachment.Adapter, kept by its caller) and o, for
// a process that did not make it (a restarted shim) to Release.
func Reopen(g Guest, nics NICs, nsPath string, adapter protocol.NetworkAdapter, o Options) (*Attachment, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("pod network %s: %w", nsPath, err)
	}
	ep := &Endpoint{NetNS: nsPath, Options: o}
	return &Attachment{Endpoint: ep, Adapter: adapter, g: g, unplug: unplug(nics, ep, adapter.MacAddress), vmDone: nics.Done()}, nil
}

// Release undoes Attach: the guest adapter returns from its namespace, the
// NIC is unplugged (QEMU closes the tap), the redirects and the tap go,
// and the guest namespace with them. Every step runs even when one fails;
// a VM that has stopped (the guest's requests then fail) or a pod
// namespace that is gone is no error. It is safe to call more than once;
// later calls return the first's result.
func (at *Attachment) Release(ctx context.Context) error {
	at.mu.Lock()
	defer at.mu.Unlock()
	if at.released {
		return at.err
	}
	at.released = true
	var guestErrs []error
	if err := at.g.RemoveNetworkAdapter(ctx, at.Adapter); err != nil {
		guestErrs = append(guestErrs, fmt.Errorf("remove the guest adapter: %w", err))
	}
	err := at.unplug(ctx)
	if err := at.g.RemoveNetworkNamespace(ctx, at.Adapter.NamespaceID); err != nil {
		guestErrs = append(guestErrs, fmt.Errorf("remove the guest network namespace: %w", err))
	}
	select {
	case <-at.vmDone: // a stopped VM took the guest's state with it
	default:
		err = errors.Join(append(guestErrs, err)...)
	}
	if err != nil {
		at.err = fmt.Errorf("release pod network %s: %w", at.Endpoint.NetNS, err)
	}
	return at.err
}
