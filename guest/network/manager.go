package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/uvmgcs/gcs/internal/log"
)

// DefaultLinkTimeout bounds the wait for an adapter's interface to appear.
const DefaultLinkTimeout = 5 * time.Second

// Config says where the Manager keeps namespaces and how it reaches the
// system.
type Config struct {
	// Dir holds each namespace's bind mount (Dir/<id>), resolv.conf and
	// hosts file. Required.
	Dir string
	// RootNamespace is the path of the network namespace adapters arrive
	// in and return to; empty: the one New is called in.
	RootNamespace string
	// ProcRoot is procfs, scanned for processes still in a namespace
	// ("/proc" if empty).
	ProcRoot string
	// Links finds interfaces in the root namespace (netlink if nil).
	Links LinkSource
	// LinkTimeout bounds the wait for an adapter's interface
	// (DefaultLinkTimeout if 0).
	LinkTimeout time.Duration
	// DHCPCommand is the DHCP client with its leading arguments, run for
	// an adapter without IP configuration; "-n -q -t 3 -i <interface>" is
	// appended (udhcpc from PATH, else busybox udhcpc, if empty).
	DHCPCommand []string
	// DHCPTimeout bounds one DHCP client run (DefaultDHCPTimeout if 0).
	DHCPTimeout time.Duration
	// Hostname goes in each namespace's hosts file (this host's name if
	// empty, or localhost when that is no valid host name).
	Hostname string
	// Reaper tracks the DHCP client's process (none if nil).
	Reaper Reaper
}

// Manager owns the pod network namespaces and their adapters. It is safe
// for concurrent use; requests are served one at a time, an Add holding
// the Manager while it waits for its interface and its DHCP lease (both
// bounded).
type Manager struct {
	cfg   Config
	root  netns.NsHandle
	rootH *netlink.Handle
	links LinkSource
	hosts []byte

	mu         sync.Mutex
	namespaces map[string]*namespace
}

// namespace is one pod network namespace.
type namespace struct {
	adapters []*adapter // in the order added
}

// adapter is an interface the Manager moved into a namespace.
type adapter struct {
	key  string
	mac  net.HardwareAddr
	name string // the interface's name, in both namespaces
	mtu  int    // its MTU before it was moved, restored on the way back
	dns  dnsConfig
}

// dns is the resolver settings of all of ns's adapters.
func (ns *namespace) dns() dnsConfig {
	var d dnsConfig
	for _, a := range ns.adapters {
		d = d.merge(a.dns)
	}
	return d
}

// New returns a Manager for cfg, creating cfg.Dir.
func New(cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("network: Dir is required: %w", errdefs.ErrInvalidArgument)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	cfg.Dir = dir
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.LinkTimeout <= 0 {
		cfg.LinkTimeout = DefaultLinkTimeout
	}
	if cfg.DHCPTimeout <= 0 {
		cfg.DHCPTimeout = DefaultDHCPTimeout
	}
	if cfg.Hostname == "" {
		if h, err := os.Hostname(); err == nil && ValidHostname(h) {
			cfg.Hostname = h
		} else {
			cfg.Hostname = "localhost"
		}
	}
	hosts, err := HostsFile(cfg.Hostname)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	m := &Manager{cfg: cfg, hosts: hosts, links: cfg.Links, namespaces: make(map[string]*namespace)}
	if cfg.RootNamespace == "" {
		m.root, err = netns.Get()
	} else {
		m.root, err = netns.GetFromPath(cfg.RootNamespace)
	}
	if err != nil {
		return nil, fmt.Errorf("network: root namespace: %w", err)
	}
	if m.rootH, err = netlink.NewHandleAt(m.root, unix.NETLINK_ROUTE); err != nil {
		m.root.Close()
		return nil, fmt.Errorf("network: netlink: %w", err)
	}
	if m.links == nil {
		m.links = netlinkLinks{h: m.rootH, ns: m.root}
	}
	return m, nil
}

// Close returns every adapter to the root namespace and deletes every
// namespace (agent shutdown).
func (m *Manager) Close(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, ns := range m.namespaces {
		for i := len(ns.adapters) - 1; i >= 0; i-- {
			if err := m.detach(m.path(id), ns.adapters[i]); err != nil {
				log.G(ctx).WithError(err).Warn("network: returning an adapter on shutdown")
			}
		}
		if err := m.deleteLocked(id); err != nil {
			log.G(ctx).WithError(err).Warn("network: deleting a namespace on shutdown")
		}
	}
	m.rootH.Close()
	m.root.Close()
}

func (m *Manager) path(id string) string       { return filepath.Join(m.cfg.Dir, id) }
func (m *Manager) resolvPath(id string) string { return m.path(id) + ".resolv.conf" }
func (m *Manager) hostsPath(id string) string  { return m.path(id) + ".hosts" }

// ensureLocked returns namespace id, creating it when it does not exist.
func (m *Manager) ensureLocked(ctx context.Context, id string) (ns *namespace, created bool, err error) {
	if ns := m.namespaces[id]; ns != nil {
		return ns, false, nil
	}
	if err := createNamespace(m.path(id)); err != nil {
		return nil, false, err
	}
	if err := writeFile(m.hostsPath(id), m.hosts); err != nil {
		deleteNamespace(m.path(id))
		return nil, false, err
	}
	ns = &namespace{}
	m.namespaces[id] = ns
	log.G(ctx).WithField("netns", id).Debug("network namespace created")
	return ns, true, nil
}

// deleteLocked deletes namespace id and its files.
func (m *Manager) deleteLocked(id string) error {
	delete(m.namespaces, id)
	var errs []error
	errs = append(errs, deleteNamespace(m.path(id)))
	for _, p := range []string{m.resolvPath(id), m.hostsPath(id)} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// AddNamespace creates namespace id unless it exists.
func (m *Manager) AddNamespace(ctx context.Context, id string) error {
	key, err := NamespaceKey(id)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _, err = m.ensureLocked(ctx, key)
	return err
}

// RemoveNamespace deletes namespace id, which must hold no adapters. A
// namespace that does not exist is already removed.
func (m *Manager) RemoveNamespace(ctx context.Context, id string) error {
	key, err := NamespaceKey(id)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ns := m.namespaces[key]
	if ns == nil {
		return nil
	}
	if n := len(ns.adapters); n > 0 {
		return fmt.Errorf("network namespace %s still holds %d adapter(s); remove them first: %w", key, n, errdefs.ErrFailedPrecondition)
	}
	if err := m.deleteLocked(key); err != nil {
		return fmt.Errorf("delete network namespace %s: %w", key, err)
	}
	log.G(ctx).WithField("netns", key).Debug("network namespace deleted")
	return nil
}

// NamespacePath returns the path of namespace id for a container to join,
// creating the namespace when it does not exist yet.
func (m *Manager) NamespacePath(id string) (string, error) {
	key, err := NamespaceKey(id)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, _, err := m.ensureLocked(context.Background(), key); err != nil {
		return "", err
	}
	return m.path(key), nil
}

// ResolvConf returns namespace id's resolv.conf, when its adapters name
// DNS servers or search domains.
func (m *Manager) ResolvConf(id string) ([]byte, bool) {
	key, err := NamespaceKey(id)
	if err != nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ns := m.namespaces[key]
	if ns == nil {
		return nil, false
	}
	d := ns.dns()
	if d.empty() {
		return nil, false
	}
	return d.resolvConf(), true
}

// writeResolvLocked writes (or, without DNS settings, removes) namespace
// id's resolv.conf.
func (m *Manager) writeResolvLocked(id string, ns *namespace) error {
	d := ns.dns()
	if d.empty() {
		if err := os.Remove(m.resolvPath(id)); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	return writeFile(m.resolvPath(id), d.resolvConf())
}

// writeFile replaces path's content in one rename.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// findLocked returns the namespace and index holding the adapter with key
// or MAC address mac (nil: any), or -1.
func (m *Manager) findLocked(key string, mac net.HardwareAddr) (string, int) {
	for id, ns := range m.namespaces {
		if i := slices.IndexFunc(ns.adapters, func(a *adapter) bool {
			return a.key == key || (mac != nil && bytes.Equal(a.mac, mac))
		}); i >= 0 {
			return id, i
		}
	}
	return "", -1
}
