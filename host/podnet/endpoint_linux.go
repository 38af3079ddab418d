package podnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/internal/netnsrun"
)

// Defaults for the zero values of Options.
const (
	DefaultInterface = "eth0"     // the interface CNI plugins create in a pod
	DefaultTap       = "tap0_uvm" // the tap Setup adds beside it
)

// Options name the interfaces in the pod's namespace.
type Options struct {
	Interface string // the pod's interface CNI set up; DefaultInterface if empty
	Tap       string // the tap to create; DefaultTap if empty
}

func (o Options) withDefaults() (Options, error) {
	if o.Interface == "" {
		o.Interface = DefaultInterface
	}
	if o.Tap == "" {
		o.Tap = DefaultTap
	}
	for _, n := range []string{o.Interface, o.Tap} {
		if len(n) >= unix.IFNAMSIZ || !validIfName(n) {
			return o, fmt.Errorf("interface name %q: want 1-%d characters, no '/', ':' or space", n, unix.IFNAMSIZ-1)
		}
	}
	if o.Interface == o.Tap {
		return o, fmt.Errorf("interface and tap are both %q", o.Tap)
	}
	return o, nil
}

func validIfName(n string) bool {
	for _, r := range n {
		if r == '/' || r == ':' || r <= ' ' || r > '~' {
			return false
		}
	}
	return n != "" && n != "." && n != ".."
}

// Endpoint is a pod network namespace whose interface is joined to a tap:
// what arrives on either leaves by the other. Release undoes it.
type Endpoint struct {
	NetNS string // the namespace's path
	Options
	Config Config // the pod interface's, for the guest adapter

	tap *os.File // the tap's queue until the VM holds its own
}

// tapFlags: a layer-2 tap without packet info, with virtio-net headers
// (offloads), failing on a name that exists.
const tapFlags = netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_TUN_EXCL

// Setup adds a tap beside the pod's interface in the network namespace at
// nsPath, which CNI has configured, and redirects traffic both ways between
// them (tc ingress qdiscs, u32 match-all filters, mirred egress redirect).
// The tap has the interface's MTU and lives as long as a descriptor of it
// is open: the Endpoint's (TapFile) until CloseTap, a VM's after that.
// A namespace already set up (an ingress qdisc on the interface, or the
// tap) is refused; on error nothing is left.
func Setup(ctx context.Context, nsPath string, o Options) (*Endpoint, error) {
	o, err := o.withDefaults()
	if err == nil && !filepath.IsAbs(nsPath) {
		err = errors.New("the namespace path must be absolute")
	}
	if err != nil {
		return nil, fmt.Errorf("pod network %q: %w", nsPath, err)
	}
	e := &Endpoint{NetNS: nsPath, Options: o}
	err = netnsrun.Run(nsPath, func() error {
		link, err := netlink.LinkByName(o.Interface)
		if err != nil {
			return fmt.Errorf("find %s: %w", o.Interface, err)
		}
		if e.Config, err = readConfig(link); err != nil {
			return err
		}
		e.tap, err = plumb(link, o.Tap)
		return err
	})
	if err != nil {
		if e.tap != nil { // made, but the thread could not leave the namespace
			e.Release(context.WithoutCancel(ctx))
		}
		return nil, fmt.Errorf("pod network %s: %w", nsPath, err)
	}
	log.G(ctx).WithField("netns", nsPath).WithField("tap", o.Tap).WithField("mac", e.Config.MAC.String()).Debug("pod network redirected to a tap")
	return e, nil
}

// plumb creates the tap beside link and the redirects between them; on
// error it leaves nothing. It runs in the pod's namespace.
func plumb(link netlink.Link, name string) (_ *os.File, err error) {
	tt := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: name},
		Mode:       netlink.TUNTAP_MODE_TAP,
		Flags:      tapFlags,
		Queues:     1,
		NonPersist: true,
	}
	if err := netlink.LinkAdd(tt); err != nil {
		return nil, fmt.Errorf("create tap %s: %w", name, err)
	}
	file := tt.Fds[0]
	var qdiscs []int // links given an ingress qdisc here
	defer func() {
		if err != nil {
			for _, i := range qdiscs {
				netlink.QdiscDel(ingress(i))
			}
			file.Close() // the last descriptor: the tap goes
		}
	}()
	tap, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find tap %s: %w", name, err)
	}
	if err := netlink.LinkSetMTU(tap, link.Attrs().MTU); err != nil {
		return nil, fmt.Errorf("set tap %s MTU %d: %w", name, link.Attrs().MTU, err)
	}
	if err := netlink.LinkSetUp(tap); err != nil {
		return nil, fmt.Errorf("bring tap %s up: %w", name, err)
	}
	for _, l := range []netlink.Link{link, tap} {
		if err := netlink.QdiscAdd(ingress(l.Attrs().Index)); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return nil, fmt.Errorf("%s already has an ingress qdisc (is the namespace attached already?): %w", l.Attrs().Name, err)
			}
			return nil, fmt.Errorf("add ingress qdisc to %s: %w", l.Attrs().Name, err)
		}
		qdiscs = append(qdiscs, l.Attrs().Index)
	}
	if err := redirect(link, tap); err != nil {
		return nil, err
	}
	if err := redirect(tap, link); err != nil {
		return nil, err
	}
	return file, nil
}

func ingress(index int) *netlink.Ingress {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_INGRESS,
	}}
}

// redirect sends every frame arriving on from out of to.
func redirect(from, to netlink.Link) error {
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from.Attrs().Index,
			Parent:    netlink.MakeHandle(0xffff, 0),
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR,
			Ifindex:      to.Attrs().Index,
		}},
	}
	if err := netlink.FilterAdd(f); err != nil {
		return fmt.Errorf("redirect %s to %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

// unredirect removes the ingress qdiscs (and with them the filters) of the
// interface and the tap, and the tap. What is not there is removed.
func unredirect(iface, tap string) error {
	var errs []error
	for _, name := range []string{iface, tap} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			if !isNotFound(err) {
				errs = append(errs, fmt.Errorf("find %s: %w", name, err))
			}
			continue
		}
		if err := netlink.QdiscDel(ingress(l.Attrs().Index)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("delete the ingress qdisc of %s: %w", name, err))
		}
		if name == tap {
			if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("delete tap %s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// readConfig reads what the guest adapter takes over from link: its MAC,
// MTU, global addresses and the main table's routes through it, less the
// prefix routes the kernel made for the addresses.
func readConfig(link netlink.Link) (Config, error) {
	attrs := link.Attrs()
	c := Config{MAC: attrs.HardwareAddr, MTU: attrs.MTU}
	if len(c.MAC) != 6 {
		return c, fmt.Errorf("%s has no Ethernet address (type %s)", attrs.Name, link.Type())
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return c, fmt.Errorf("list addresses of %s: %w", attrs.Name, err)
	}
	for _, a := range addrs {
		if a.Scope == unix.RT_SCOPE_UNIVERSE && a.IPNet != nil {
			c.Addrs = append(c.Addrs, a.IPNet)
		}
	}
	if len(c.Addrs) == 0 {
		return c, fmt.Errorf("%s has no global address: has CNI set it up?", attrs.Name)
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: attrs.Index}, netlink.RT_FILTER_OIF)
	if err != nil {
		return c, fmt.Errorf("list routes of %s: %w", attrs.Name, err)
	}
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || r.Type != unix.RTN_UNICAST || len(r.MultiPath) > 0 {
			continue
		}
		dst := r.Dst
		if ones, _ := maskSize(dst); ones == 0 {
			dst = nil
		}
		if dst == nil && r.Gw == nil {
			continue // a default route with no next hop cannot be carried
		}
		c.Routes = append(c.Routes, Route{Dst: dst, Gw: r.Gw, Metric: r.Priority})
	}
	return c, nil
}

func maskSize(n *net.IPNet) (int, int) {
	if n == nil {
		return 0, 0
	}
	return n.Mask.Size()
}

// TapFile is the tap's open queue, for the VM (nil after CloseTap).
func (e *Endpoint) TapFile() *os.File { return e.tap }

// CloseTap closes the Endpoint's descriptor of the tap once the VM holds
// its own: from then on the tap lives exactly as long as the VM's NIC.
func (e *Endpoint) CloseTap() error {
	if e.tap == nil {
		return nil
	}
	err := e.tap.Close()
	e.tap = nil
	return err
}

// Release removes the redirects and the tap. A namespace that is gone took
// them with it: that is no error. It is safe to call more than once.
func (e *Endpoint) Release(ctx context.Context) error {
	err := e.CloseTap()
	return errors.Join(err, Teardown(ctx, e.NetNS, e.Options))
}

// Teardown undoes Setup by name, for a process that did not run it (a
// restarted shim): the ingress qdiscs and filters on the pod's interface
// and on the tap, and the tap. A namespace that is gone is no error.
func Teardown(ctx context.Context, nsPath string, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return fmt.Errorf("pod network %s: %w", nsPath, err)
	}
	err = netnsrun.Run(nsPath, func() error { return unredirect(o.Interface, o.Tap) })
	if errors.Is(err, netnsrun.ErrNotNetNS) {
		log.G(ctx).WithField("netns", nsPath).Debug("pod network namespace is gone; nothing to undo")
		return nil
	}
	if err != nil {
		return fmt.Errorf("pod network %s: %w", nsPath, err)
	}
	return nil
}
