// Package agent wires the guest compute service together: the bridge and
// its mux, processes in the utility VM, containers, storage and networks,
// each from a Config whose roots (state, sysfs, /dev, kernel modules,
// cgroups) a caller chooses. cmd/gcs builds the production agent with it;
// tests build the very same agent over temporary roots.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "github.com/opencontainers/cgroups/devices" // registers the device-cgroup manager libcontainer needs

	"github.com/uvmgcs/gcs/guest/bridge"
	"github.com/uvmgcs/gcs/guest/kmod"
	"github.com/uvmgcs/gcs/guest/network"
	"github.com/uvmgcs/gcs/guest/runtime"
	"github.com/uvmgcs/gcs/guest/runtime/container"
	"github.com/uvmgcs/gcs/guest/storage"
	"github.com/uvmgcs/gcs/transport"
)

// Config describes one agent. Empty roots take the utility VM's values.
type Config struct {
	// Dialer reaches the host's bridge and stdio ports. Required.
	Dialer transport.Dialer
	// StateRoot holds bundles, libcontainer's state and pod network
	// namespaces. Required; created if missing.
	StateRoot string
	// CgroupParent is the cgroup containers go under when their spec names
	// none ("/containers" if empty).
	CgroupParent string
	// SysRoot is sysfs ("/sys"); DevRoot holds device nodes ("/dev").
	SysRoot, DevRoot string
	// ModulesRoot holds the kernel's modules ("/lib/modules"); loaded ones
	// are read from SysRoot/module.
	ModulesRoot string
	// MountInfo is the agent's mountinfo ("/proc/self/mountinfo"), read to
	// tell whether containers can pivot_root.
	MountInfo string
	// StorageRoots are the directories every guest path the host names
	// must lie beneath (/run/layers, /run/mounts and StateRoot if empty).
	StorageRoots []string
	// ResolvConf is what containers' resolv.conf is copied from
	// ("/etc/resolv.conf" if empty).
	ResolvConf string
	// DeviceTimeout bounds the wait for a disk or VPMem device, and
	// LinkTimeout the wait for a network adapter (defaults if 0).
	DeviceTimeout, LinkTimeout time.Duration
	// Started is when the process started; negotiation logs the time since.
	Started time.Time
	// Reaper collects this process's children; there is one per process,
	// and the caller runs it. Nil: the agent runs its own until Close.
	Reaper *runtime.Reaper
}

// Agent is a wired guest compute service. Close releases what it holds:
// containers, network namespaces, mounts, processes.
type Agent struct {
	dialer     transport.Dialer
	bridge     *bridge.Bridge
	reaper     *runtime.Reaper
	stopReaper context.CancelFunc
	procs      *runtime.Processes
	storage    *storage.Manager
	network    *network.Manager
	containers *container.Manager

	shutdownOnce sync.Once
	shutdown     chan struct{}
}

// New builds the agent cfg describes. Its reaper, if it runs its own,
// starts at once (it must see every child); nothing is served until Run or
// Serve.
func New(cfg Config) (_ *Agent, err error) {
	if cfg.Dialer == nil || cfg.StateRoot == "" {
		return nil, errors.New("agent: Dialer and StateRoot are required")
	}
	cfg = withDefaults(cfg)
	if err := os.MkdirAll(cfg.StateRoot, 0o700); err != nil {
		return nil, fmt.Errorf("state root: %w", err)
	}
	a := &Agent{dialer: cfg.Dialer, shutdown: make(chan struct{})}
	defer func() {
		if err != nil {
			a.Close(context.Background())
		}
	}()
	// The reaper outlives the bridge: shutting down waits for the
	// processes it kills, and their exits arrive through it.
	a.reaper = cfg.Reaper
	if a.reaper == nil {
		a.reaper = runtime.NewReaper()
		var rctx context.Context
		rctx, a.stopReaper = context.WithCancel(context.Background())
		go a.reaper.Run(rctx)
	}
	a.procs = runtime.NewProcesses(cfg.Dialer, a.reaper)

	// Storage outlives the containers: their root filesystems are its mounts.
	if a.storage, err = storage.New(storage.Config{SysRoot: cfg.SysRoot, DevRoot: cfg.DevRoot,
		AllowedRoots: cfg.StorageRoots, DeviceTimeout: cfg.DeviceTimeout, Dialer: cfg.Dialer}); err != nil {
		return nil, err
	}
	// Pod network namespaces outlive the containers in them.
	if a.network, err = network.New(network.Config{Dir: filepath.Join(cfg.StateRoot, "netns"),
		LinkTimeout: cfg.LinkTimeout, Reaper: a.reaper}); err != nil {
		return nil, err
	}

	mux := bridge.NewMux()
	a.bridge = bridge.New(bridge.Config{Handler: mux, Capabilities: bridge.LinuxCapabilities(true), Started: cfg.Started})
	if a.containers, err = container.New(container.Config{
		StateRoot:    cfg.StateRoot,
		CgroupParent: cfg.CgroupParent,
		ResolvConf:   cfg.ResolvConf,
		NoPivotRoot:  container.RootIsInitramfs(cfg.MountInfo),
		Dialer:       cfg.Dialer,
		Reaper:       a.reaper,
		Notify:       a.bridge.Notify,
		Network:      a.network,
	}); err != nil {
		return nil, err
	}
	resources := Resources(a.storage, a.network, kmod.New(cfg.ModulesRoot, filepath.Join(cfg.SysRoot, "module")))
	(&bridge.UVM{Processes: a.procs, Shutdown: a.requestShutdown, Containers: a.containers, Resources: resources}).Register(mux)
	return a, nil
}

func withDefaults(cfg Config) Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&cfg.SysRoot, "/sys")
	def(&cfg.DevRoot, "/dev")
	def(&cfg.ModulesRoot, "/lib/modules")
	def(&cfg.MountInfo, "/proc/self/mountinfo")
	if len(cfg.StorageRoots) == 0 {
		cfg.StorageRoots = []string{"/run/layers", "/run/mounts", cfg.StateRoot}
	}
	return cfg
}

// requestShutdown ends Run and Serve: the host asked the VM to shut down.
func (a *Agent) requestShutdown() {
	a.shutdownOnce.Do(func() { close(a.shutdown) })
}

// untilShutdown returns ctx ended also by a shutdown request.
func (a *Agent) untilShutdown(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-a.shutdown:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Run dials the host and serves the bridge, redialing after a drop, until
// ctx ends or the host shuts the VM down (then it returns context.Canceled).
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := a.untilShutdown(ctx)
	defer cancel()
	return a.bridge.Run(ctx, a.dialer)
}

// Serve serves one bridge connection until it drops, ctx ends or the host
// shuts the VM down.
func (a *Agent) Serve(ctx context.Context, conn net.Conn) error {
	ctx, cancel := a.untilShutdown(ctx)
	defer cancel()
	return a.bridge.Serve(ctx, conn)
}

// Close releases everything the agent holds, containers first, then pod
// networks, mounts and processes in the VM.
func (a *Agent) Close(ctx context.Context) error {
	var err error
	if a.containers != nil {
		a.containers.Close(ctx)
	}
	if a.network != nil {
		a.network.Close(ctx)
	}
	if a.storage != nil {
		err = a.storage.Close(ctx)
	}
	if a.procs != nil {
		a.procs.Close(ctx)
	}
	if a.stopReaper != nil {
		a.stopReaper()
	}
	return err
}
