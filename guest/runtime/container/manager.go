package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/uvmgcs/gcs/guest/runtime"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/internal/memtrim"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// Config configures a Manager.
type Config struct {
	// StateRoot holds bundles (StateRoot/c/<id>) and libcontainer's state
	// (StateRoot/runc). Container root filesystems must lie inside it.
	StateRoot string
	// CgroupParent is the cgroup containers go under when their spec names
	// none ("/containers" if empty).
	CgroupParent string
	// ResolvConf is the file containers' /etc/resolv.conf is copied from
	// ("/etc/resolv.conf" if empty; a missing file gives an empty one).
	ResolvConf string
	// Dialer dials the host's stdio ports.
	Dialer transport.Dialer
	// Reaper starts and tracks every process.
	Reaper *runtime.Reaper
	// Notify delivers a container's exit notification to the host.
	Notify func(context.Context, protocol.ContainerNotificationMessage)
	// Network resolves the network namespace a spec names in
	// windows.network.networkNamespace (nil: such specs are not special).
	Network Network
	// NoPivotRoot enters container roots with MS_MOVE and chroot instead
	// of pivot_root, which the initramfs a VM runs from does not allow
	// (see RootIsInitramfs).
	NoPivotRoot bool
	// NoCgroupWarmup turns off the no-op cgroup migration started ahead of
	// container starts and execs (see cgroupWarmer).
	NoCgroupWarmup bool
	// TrimAfter is how long after the last create, start, exec or delete
	// (or load of a container's libcontainer state) libcontainer's objects
	// of started containers are dropped and the heap's free memory is
	// returned to the system (see internal/memtrim and Container.lc):
	// 250 ms when zero, never when negative.
	TrimAfter time.Duration
}

// defaultTrimAfter is Config.TrimAfter's default: longer than the gaps
// between the requests of one container's start or of a burst of them.
const defaultTrimAfter = 250 * time.Millisecond

// Network is what containers need of the guest's network manager
// (guest/network): the path of a pod's network namespace, created if need
// be, and its resolv.conf when its adapters name DNS settings.
type Network interface {
	NamespacePath(id string) (string, error)
	ResolvConf(id string) ([]byte, bool)
}

// Manager is the set of containers. It is safe for concurrent use.
type Manager struct {
	cfg    Config
	lcRoot string
	warmer cgroupWarmer
	trim   *memtrim.Trimmer // nil: never

	mu         sync.Mutex
	containers map[string]*Container // nil entry: being created
}

// maxIDLength bounds a container id.
const maxIDLength = 128

// validID reports whether id looks like [A-Za-z0-9][A-Za-z0-9_.-]*: a file
// name, never a path.
func validID(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			i > 0 && (c == '_' || c == '.' || c == '-')) {
			return false
		}
	}
	return true
}

// ValidateID refuses ids that are empty, too long, the utility VM's, or
// anything but a plain file name.
func ValidateID(id string) error {
	if len(id) == 0 || len(id) > maxIDLength || !validID(id) || id == protocol.UVMContainerID {
		return fmt.Errorf("container id %q: want 1-%d of [A-Za-z0-9_.-], not starting with '.', '_' or '-': %w",
			id, maxIDLength, protocol.HrInvalidArg)
	}
	return nil
}

// New returns a Manager, creating its directories.
func New(cfg Config) (*Manager, error) {
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "/containers"
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.Notify == nil {
		cfg.Notify = func(context.Context, protocol.ContainerNotificationMessage) {}
	}
	root, err := filepath.Abs(cfg.StateRoot)
	if err != nil {
		return nil, err
	}
	cfg.StateRoot = root
	m := &Manager{cfg: cfg, lcRoot: filepath.Join(root, "runc"), containers: make(map[string]*Container)}
	if !cfg.NoCgroupWarmup {
		m.warmer.h = ownHierarchy()
	}
	if cfg.TrimAfter == 0 {
		cfg.TrimAfter = defaultTrimAfter
	}
	if cfg.TrimAfter > 0 {
		m.trim = memtrim.New(cfg.TrimAfter, m.idle)
	}
	for _, d := range []string{m.lcRoot, filepath.Join(root, "c")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
	}
	return m, nil
}

// snapshot lists the containers the manager holds now.
func (m *Manager) snapshot() []*Container {
	m.mu.Lock()
	defer m.mu.Unlock()
	cs := make([]*Container, 0, len(m.containers))
	for _, c := range m.containers {
		if c != nil {
			cs = append(cs, c)
		}
	}
	return cs
}

// idle runs once the agent has been quiet for TrimAfter: it drops
// libcontainer's objects of started containers (see Container.lc) and
// returns the heap's free memory, theirs included, to the system.
func (m *Manager) idle() {
	cs := m.snapshot()
	for _, c := range cs {
		c.releaseLC()
	}
	debug.FreeOSMemory()
}

// get returns container id or a not-found error.
func (m *Manager) get(id string) (*Container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.containers[id]
	if c == nil {
		return nil, fmt.Errorf("container %q: %w", id, protocol.HrVmcomputeSystemNotFound)
	}
	return c, nil
}

// reserve claims id for a Create in progress.
func (m *Manager) reserve(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.containers[id]; ok {
		return fmt.Errorf("container %q: %w", id, protocol.HrVmcomputeSystemAlreadyExists)
	}
	if _, err := os.Stat(filepath.Join(m.lcRoot, id)); err == nil {
		return fmt.Errorf("container %q has state from an earlier agent: %w", id, protocol.HrVmcomputeSystemAlreadyExists)
	}
	m.containers[id] = nil
	return nil
}

func (m *Manager) release(id string, c *Container) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c == nil {
		delete(m.containers, id)
		return
	}
	m.containers[id] = c
}

// Create creates container id from cfg; its init starts on the first
// ExecProcess.
func (m *Manager) Create(ctx context.Context, id string, cfg *protocol.ContainerConfig) (retErr error) {
	if err := ValidateID(id); err != nil {
		return err
	}
	if err := m.reserve(id); err != nil {
		return err
	}
	m.warmer.warm()
	defer m.trim.Touch()
	var c *Container
	defer func() { m.release(id, c) }()

	b, err := m.prepare(ctx, id, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(b.dir)
		}
	}()
	lc, err := libcontainer.Create(m.lcRoot, id, b.config)
	if err != nil {
		return fmt.Errorf("create container %q: %w", id, err)
	}
	c = newContainer(m, id, b, lc)
	paths := cgroupPaths(lc)
	c.freezer = freezerPath(paths)
	c.cgPrep = prepareCgroups(paths)
	c.activity = protocol.ActivityID(ctx)
	log.G(ctx).WithField(log.FieldContainerID, id).Debug("container created")
	return nil
}

// Delete removes a stopped (or never started) container's state: its
// cgroups, libcontainer state, bundle and scratch.
func (m *Manager) Delete(ctx context.Context, id string) error {
	defer m.trim.Touch()
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if err := c.destroy(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.containers, id)
	m.mu.Unlock()
	return nil
}

// Close kills every container and removes their state (agent shutdown).
func (m *Manager) Close(ctx context.Context) {
	defer m.trim.Stop()
	m.mu.Lock()
	var cs []*Container
	for _, c := range m.containers {
		if c != nil {
			cs = append(cs, c)
		}
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, c := range cs {
		c.kill()
	}
	for _, c := range cs {
		if err := c.waitStopped(ctx); err != nil {
			log.G(ctx).WithField(log.FieldContainerID, c.id).WithError(err).Warn("container did not stop")
			continue
		}
		if err := m.Delete(ctx, c.id); err != nil && !errors.Is(err, protocol.HrVmcomputeSystemNotFound) {
			log.G(ctx).WithField(log.FieldContainerID, c.id).WithError(err).Warn("delete on shutdown")
		}
	}
}
