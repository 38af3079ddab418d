package dm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/internal/log"
)

// Prefix starts the name of every device a Mapper makes, unless its
// Config names another.
const Prefix = "uvmgcs-"

// ErrUnavailable means the kernel offers no device-mapper (dm-mod is
// neither built in nor loaded).
var ErrUnavailable = errors.New("device-mapper unavailable")

// Removing a device its last user has just closed can fail with EBUSY for
// a moment (the closing user's references are dropped asynchronously); a
// removal is retried this many times, this far apart.
const (
	removeAttempts = 20
	removeDelay    = 25 * time.Millisecond
)

// Config says where a Mapper finds the device-mapper and names devices.
type Config struct {
	// DevRoot holds device nodes ("/dev"): the control node is
	// DevRoot/mapper/control, device nodes go beside it.
	DevRoot string
	// SysRoot is sysfs ("/sys"), read when the control node is missing.
	SysRoot string
	// Prefix starts every device name (Prefix if empty).
	Prefix string
}

// Mapper creates and removes device-mapper devices. It holds no state
// besides its configuration and opens the control node per call, so it is
// safe for concurrent use; callers keep device names distinct.
type Mapper struct{ cfg Config }

// New returns a Mapper for cfg.
func New(cfg Config) *Mapper {
	if cfg.Prefix == "" {
		cfg.Prefix = Prefix
	}
	return &Mapper{cfg: cfg}
}

// Device is one device-mapper device as the kernel lists it.
type Device struct {
	Name         string // full name, prefix included
	Major, Minor uint32
}

// FullName is the kernel's name for the device a Mapper calls name.
func (m *Mapper) FullName(name string) string { return m.cfg.Prefix + name }

// NameFor returns the name of the device of kind ("pmem0-linear") that
// the mount at target sits on, such as "pmem0-linear-1a2b3c4d5e6f". The
// mount table holds one mount per target, so the devices of different
// mounts never share a name, even over the same disk.
func NameFor(kind, target string) string {
	sum := sha256.Sum256([]byte(target))
	return fmt.Sprintf("%s-%x", kind, sum[:6])
}

// Path is the device node of the device a Mapper calls name.
func (m *Mapper) Path(name string) string {
	return filepath.Join(m.cfg.DevRoot, "mapper", m.FullName(name))
}

// checkName refuses names the kernel would truncate or that would not be
// one file in DevRoot/mapper.
func checkName(full string) error {
	ok := len(full) > 0 && len(full) < unix.DM_NAME_LEN && full != "." && full != ".."
	for _, r := range full {
		if r <= ' ' || r > '~' || r == '/' {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("device-mapper name %q: want 1 to %d printable characters without '/' or spaces: %w",
			full, unix.DM_NAME_LEN-1, errdefs.ErrInvalidArgument)
	}
	return nil
}

// open opens the control node, creating it from sysfs when devtmpfs has
// not, and checks that the kernel speaks the ioctl version used here.
func (m *Mapper) open() (*control, error) {
	path := filepath.Join(m.cfg.DevRoot, "mapper", "control")
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if err = m.makeControlNode(path); err == nil {
			f, err = os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	c := &control{f: f}
	if err := c.call(unix.DM_VERSION, newRequest("", 0)); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return c, nil
}

// makeControlNode creates the control node with the numbers sysfs gives
// the device-mapper's misc device.
func (m *Mapper) makeControlNode(path string) error {
	src := filepath.Join(m.cfg.SysRoot, "class", "misc", "device-mapper", "dev")
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("no %s and no %s (is dm-mod loaded?): %w", path, src, err)
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err != nil {
		return fmt.Errorf("%s holds %q: %w", src, b, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	err = unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(major, minor)))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

// Create makes the device name with table (sectors of 512 bytes),
// activates it, and returns its device node. readOnly makes the device
// refuse writes. On failure nothing is left behind.
func (m *Mapper) Create(ctx context.Context, name string, table []Target, readOnly bool) (_ string, err error) {
	full := m.FullName(name)
	if err := checkName(full); err != nil {
		return "", err
	}
	if len(table) == 0 {
		return "", fmt.Errorf("device-mapper %s: empty table: %w", full, errdefs.ErrInvalidArgument)
	}
	load, err := encodeTable(full, table)
	if err != nil {
		return "", err
	}
	if readOnly {
		load.header().Flags |= unix.DM_READONLY_FLAG
	}
	c, err := m.open()
	if err != nil {
		return "", err
	}
	defer c.Close()
	created := newRequest(full, 0)
	if err := c.call(unix.DM_DEV_CREATE, created); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return "", fmt.Errorf("%w (a device of that name exists already)", err)
		}
		return "", err
	}
	defer func() {
		if err != nil {
			if rerr := m.remove(ctx, c, full); rerr != nil {
				log.G(ctx).WithError(rerr).Warn("device-mapper: removing a device that failed to come up")
			}
		}
	}()
	if err := c.call(unix.DM_TABLE_LOAD, load); err != nil {
		return "", fmt.Errorf("%w (table %q)", err, describe(table))
	}
	// DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes the device, which
	// makes the loaded table live.
	if err := c.call(unix.DM_DEV_SUSPEND, newRequest(full, 0)); err != nil {
		return "", err
	}
	path, err := m.makeNode(full, created.header().Dev)
	if err != nil {
		return "", err
	}
	log.G(ctx).WithField("device", full).WithField("table", describe(table)).Debug("device-mapper device created")
	return path, nil
}

// describe formats table the way dmsetup prints one.
func describe(table []Target) string {
	lines := make([]string, len(table))
	for i, t := range table {
		lines[i] = fmt.Sprintf("%d %d %s %s", t.Start, t.Length, t.Type, t.Params)
	}
	return strings.Join(lines, "\n")
}

// makeNode creates DevRoot/mapper/full for the device numbered dev (the
// kernel's huge_encode_dev, which unix.Major and unix.Minor read). The
// guest has no udev to do it; a node or link that is already there and
// names the same device is kept.
func (m *Mapper) makeNode(full string, dev uint64) (string, error) {
	dir := filepath.Join(m.cfg.DevRoot, "mapper")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("device-mapper node: %w", err)
	}
	path := filepath.Join(dir, full)
	rdev := unix.Mkdev(unix.Major(dev), unix.Minor(dev))
	err := unix.Mknod(path, unix.S_IFBLK|0o600, int(rdev))
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == rdev {
			return path, nil
		}
		// A node left over from an older device of that name.
		if err = os.Remove(path); err == nil {
			err = unix.Mknod(path, unix.S_IFBLK|0o600, int(rdev))
		}
	}
	if err != nil {
		return "", fmt.Errorf("device-mapper node %s: %w", path, err)
	}
	return path, nil
}

// Remove removes the device name and its node. The device must not be in
// use; EBUSY, which can trail the last user's close, is retried a bounded
// number of times. A device that does not exist is removed already: that
// is success.
func (m *Mapper) Remove(ctx context.Context, name string) error {
	full := m.FullName(name)
	if err := checkName(full); err != nil {
		return err
	}
	c, err := m.open()
	if err != nil {
		return err
	}
	defer c.Close()
	return m.remove(ctx, c, full)
}

func (m *Mapper) remove(ctx context.Context, c *control, full string) error {
	for attempt := 1; ; attempt++ {
		err := c.call(unix.DM_DEV_REMOVE, newRequest(full, 0))
		if err == nil || errors.Is(err, unix.ENXIO) {
			break
		}
		if !errors.Is(err, unix.EBUSY) || attempt == removeAttempts {
			return fmt.Errorf("%w (attempt %d)", err, attempt)
		}
		t := time.NewTimer(removeDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (attempt %d): %w", err, attempt, ctx.Err())
		case <-t.C:
		}
	}
	path := filepath.Join(m.cfg.DevRoot, "mapper", full)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("device-mapper node: %w", err)
	}
	log.G(ctx).WithField("device", full).Debug("device-mapper device removed")
	return nil
}

// List returns every device-mapper device, whoever made it (dmsetup ls).
func (m *Mapper) List() ([]Device, error) {
	c, err := m.open()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	b, err := c.callGrowing(unix.DM_LIST_DEVICES, "", 0)
	if err != nil {
		return nil, err
	}
	return decodeNames(b)
}

// Owned returns, by full name, the devices carrying this Mapper's prefix
// and the nodes in DevRoot/mapper that do: what a clean shutdown leaves
// none of.
func (m *Mapper) Owned() ([]string, error) {
	devs, err := m.List()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, d := range devs {
		if strings.HasPrefix(d.Name, m.cfg.Prefix) {
			seen[d.Name] = true
		}
	}
	ents, err := os.ReadDir(filepath.Join(m.cfg.DevRoot, "mapper"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), m.cfg.Prefix) {
			seen[e.Name()] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// Targets returns the target types the kernel has loaded ("linear",
// "verity", ...). Loading a table asks the kernel to load a missing one.
func (m *Mapper) Targets() ([]string, error) {
	c, err := m.open()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	b, err := c.callGrowing(unix.DM_LIST_VERSIONS, "", 0)
	if err != nil {
		return nil, err
	}
	return decodeVersions(b)
}

// Status returns the live table of the device name with each target's
// status in Params (dmsetup status): dm-verity reports "V" while every
// block read so far verified and "C" once one did not.
func (m *Mapper) Status(name string) ([]Target, error) { return m.tableStatus(name, 0) }

// Table returns the live table of the device name (dmsetup table).
func (m *Mapper) Table(name string) ([]Target, error) {
	return m.tableStatus(name, unix.DM_STATUS_TABLE_FLAG)
}

func (m *Mapper) tableStatus(name string, flags uint32) ([]Target, error) {
	full := m.FullName(name)
	if err := checkName(full); err != nil {
		return nil, err
	}
	c, err := m.open()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	b, err := c.callGrowing(unix.DM_TABLE_STATUS, full, flags)
	if err != nil {
		return nil, err
	}
	return decodeTargets(b)
}
