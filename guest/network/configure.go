package network

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
)

// minMTU is the smallest MTU IPv4 allows.
const minMTU = 68

// AddAdapter moves the interface with a's MAC address into a's namespace
// (created if it does not exist) and configures it: MTU less
// EncapOverhead, addresses (DHCP when there are none), routes, resolver.
// On error the interface is back where it was.
func (m *Manager) AddAdapter(ctx context.Context, a *protocol.NetworkAdapter) error {
	p, err := parseAdapter(a)
	if err != nil {
		return err
	}
	ctx, lg := log.With(ctx, "netns", p.ns)
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, _ := m.findLocked(p.key, p.mac); id != "" {
		return fmt.Errorf("adapter %s (MAC %s) is already in network namespace %s: %w", p.key, p.mac, id, errdefs.ErrFailedPrecondition)
	}
	if ns := m.namespaces[p.ns]; ns != nil {
		if err := ns.dns().merge(p.dns).check(); err != nil {
			return fmt.Errorf("namespace %s with adapter %s: %w", p.ns, p.key, err)
		}
	}
	link, err := waitForLink(ctx, m.links, p.mac, m.cfg.LinkTimeout)
	if err != nil {
		return err
	}
	ns, created, err := m.ensureLocked(ctx, p.ns)
	if err != nil {
		return err
	}
	ad, err := m.attach(ctx, m.path(p.ns), link, p)
	if err == nil {
		ns.adapters = append(ns.adapters, ad)
		if err = m.writeResolvLocked(p.ns, ns); err != nil {
			ns.adapters = ns.adapters[:len(ns.adapters)-1]
			if derr := m.detach(m.path(p.ns), ad); derr != nil {
				lg.WithError(derr).Warn("network: returning an adapter after a failed add")
			}
			err = fmt.Errorf("resolv.conf of namespace %s: %w", p.ns, err)
		}
	}
	if err != nil {
		if created {
			if derr := m.deleteLocked(p.ns); derr != nil {
				lg.WithError(derr).Warn("network: deleting a namespace after a failed add")
			}
		}
		return err
	}
	lg.WithField("interface", ad.name).WithField("mac", p.mac.String()).Info("network adapter added")
	return nil
}

// RemoveAdapter returns the adapter a names (by ID, else MAC) from its
// namespace to the root namespace, down, and deletes the namespace when
// that was its last adapter and no process is in it. An adapter that is
// not there is already removed.
func (m *Manager) RemoveAdapter(ctx context.Context, a *protocol.NetworkAdapter) error {
	nsKey, err := NamespaceKey(a.NamespaceID)
	if err != nil {
		return err
	}
	key, err := adapterKey(a)
	if err != nil {
		return err
	}
	mac, _ := ParseMAC(a.MacAddress) // nil unless given, and then as good as the key
	ctx, lg := log.With(ctx, "netns", nsKey)
	m.mu.Lock()
	defer m.mu.Unlock()
	ns := m.namespaces[nsKey]
	i := -1
	if ns != nil {
		i = slices.IndexFunc(ns.adapters, func(ad *adapter) bool {
			return ad.key == key || (mac != nil && bytes.Equal(ad.mac, mac))
		})
	}
	if i < 0 {
		lg.WithField("adapter", key).Debug("network: removing an adapter that is not there")
		return nil
	}
	ad := ns.adapters[i]
	if err := m.detach(m.path(nsKey), ad); err != nil {
		return err
	}
	ns.adapters = slices.Delete(ns.adapters, i, i+1)
	if err := m.writeResolvLocked(nsKey, ns); err != nil {
		lg.WithError(err).Warn("network: rewriting resolv.conf")
	}
	lg.WithField("interface", ad.name).Info("network adapter removed")
	if len(ns.adapters) == 0 && !inUse(m.cfg.ProcRoot, m.path(nsKey)) {
		if err := m.deleteLocked(nsKey); err != nil {
			return fmt.Errorf("delete network namespace %s: %w", nsKey, err)
		}
		lg.Debug("network namespace deleted with its last adapter")
	}
	return nil
}

// attach moves link into the namespace at nsPath and configures it as p
// asks; on error it moves the link back.
func (m *Manager) attach(ctx context.Context, nsPath string, link netlink.Link, p *plan) (*adapter, error) {
	attrs := link.Attrs()
	ad := &adapter{key: p.key, mac: p.mac, name: attrs.Name, mtu: attrs.MTU, dns: p.dns}
	mtu := attrs.MTU
	if p.overhead > 0 {
		mtu -= p.overhead
		if mtu < minMTU {
			return nil, fmt.Errorf("MTU %d less encapsulation overhead %d is below %d: %w", attrs.MTU, p.overhead, minMTU, errdefs.ErrInvalidArgument)
		}
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	err = m.rootH.LinkSetNsFd(link, int(ns))
	ns.Close()
	if err != nil {
		return nil, fmt.Errorf("move %s (MAC %s) into namespace %s: %w", ad.name, p.mac, p.ns, err)
	}
	err = inNamespace(nsPath, func(h *netlink.Handle) error { return setUp(h, ad, mtu, p) })
	if err == nil && len(p.addrs) == 0 {
		err = m.runDHCP(ctx, nsPath, ad.name)
	}
	if err == nil {
		err = inNamespace(nsPath, func(h *netlink.Handle) error { return addRoutes(h, ad, p.routes) })
	}
	if err != nil {
		if derr := m.detach(nsPath, ad); derr != nil {
			log.G(ctx).WithError(derr).Warn("network: returning an adapter after a failed add")
		}
		return nil, err
	}
	return ad, nil
}

// inNS finds ad's interface among h's by its MAC address.
func inNS(h *netlink.Handle, ad *adapter) (netlink.Link, error) {
	links, err := linkList(h)
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	return byMAC(links, ad.mac), nil
}

// setUp gives ad's interface its MTU and addresses and brings it up.
func setUp(h *netlink.Handle, ad *adapter, mtu int, p *plan) error {
	l, err := inNS(h, ad)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("interface %s (MAC %s) vanished from namespace %s", ad.name, ad.mac, p.ns)
	}
	if mtu != l.Attrs().MTU {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", mtu, ad.name, err)
		}
	}
	for _, a := range p.addrs {
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: a}); err != nil {
			return fmt.Errorf("add address %s to %s: %w", a, ad.name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %w", ad.name, err)
	}
	return nil
}

// addRoutes installs routes through ad's interface, in order.
func addRoutes(h *netlink.Handle, ad *adapter, routes []route) error {
	l, err := inNS(h, ad)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("interface %s (MAC %s) vanished", ad.name, ad.mac)
	}
	for _, r := range routes {
		nr := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: r.dst, Gw: r.gw, Priority: r.metric}
		if r.gw == nil {
			nr.Scope = netlink.SCOPE_LINK
		}
		// Replace: a DHCP client may have installed the same route.
		if err := h.RouteReplace(nr); err != nil {
			return fmt.Errorf("add route %s via %s on %s: %w", describe(r.dst), r.gw, ad.name, err)
		}
	}
	return nil
}

func describe(dst *net.IPNet) string {
	if dst == nil {
		return "default"
	}
	return dst.String()
}

// detach moves ad's interface from the namespace at nsPath back to the
// root namespace, down and with its old MTU. An interface that is no
// longer there is not an error.
func (m *Manager) detach(nsPath string, ad *adapter) error {
	err := inNamespace(nsPath, func(h *netlink.Handle) error {
		l, err := inNS(h, ad)
		if err != nil || l == nil {
			return err
		}
		if err := h.LinkSetDown(l); err != nil {
			return fmt.Errorf("bring %s down: %w", ad.name, err)
		}
		if ad.mtu > 0 && l.Attrs().MTU != ad.mtu {
			if err := h.LinkSetMTU(l, ad.mtu); err != nil {
				return fmt.Errorf("restore MTU %d on %s: %w", ad.mtu, ad.name, err)
			}
		}
		if err := h.LinkSetNsFd(l, int(m.root)); err != nil {
			return fmt.Errorf("move %s back to the root namespace: %w", ad.name, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove adapter %s (MAC %s): %w", ad.key, ad.mac, err)
	}
	return nil
}
