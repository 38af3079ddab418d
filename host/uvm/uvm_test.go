//go:build linux

package uvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/guest/bridge"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// machine is a Machine whose "VM" is the real guest bridge in this
// process, at the far end of a socket pair standing in for the serial
// channel. Its hot-plug is a LUN table that records what happens, in
// the same log as the guest's requests.
type machine struct {
	host   net.Conn
	guest  net.Conn
	done   chan struct{}
	cancel context.CancelFunc
	mux    *transport.MuxHost
	log    *eventLog
	res    bridge.Resources

	mu   sync.Mutex
	luns map[uint8]string

	// plug and unplug, when set, make a hot-plug real for the guest
	// (a loop device behind a fake sysfs entry).
	plug   func(path string, lun uint8, ro bool) error
	unplug func(lun uint8)
}

// eventLog is the order things happened in, host and guest.
type eventLog struct {
	mu     sync.Mutex
	lines  []string
	failOn string
}

func (l *eventLog) add(line string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if l.failOn != "" && line == l.failOn {
		return fmt.Errorf("refused %s: %w", line, protocol.HrInvalidArg)
	}
	return nil
}

func (l *eventLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

// guestLog is the guest's Resources: it logs each request.
type guestLog struct{ log *eventLog }

func (g guestLog) Modify(ctx context.Context, req protocol.ModificationRequest) error {
	var s struct {
		MountPath, ContainerRootPath string
		Lun                          uint8
	}
	json.Unmarshal(req.Settings, &s)
	line := "guest " + req.RequestType + " " + req.ResourceType
	switch req.ResourceType {
	case protocol.ResourceMappedVirtualDisk, protocol.ResourceMappedDirectory:
		line += " " + s.MountPath
	case protocol.ResourceCombinedLayers:
		line += " " + s.ContainerRootPath
	case protocol.ResourceSCSIDevice:
		line += fmt.Sprintf(" lun=%d", s.Lun)
	}
	return g.log.add(line)
}

func socketPair(t *testing.T) (net.Conn, net.Conn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "sp")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

func newMachine(t *testing.T) *machine {
	h, g := socketPair(t)
	l := &eventLog{}
	return &machine{host: h, guest: g, done: make(chan struct{}), log: l, res: guestLog{l}, luns: map[uint8]string{}}
}

func (m *machine) Start(ctx context.Context) error {
	gctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	mux := bridge.NewMux()
	(&bridge.UVM{Resources: m.res}).Register(mux)
	b := bridge.New(bridge.Config{Handler: mux, Capabilities: bridge.LinuxCapabilities(false)})
	d := &transport.MuxDialer{Open: func() (io.ReadWriteCloser, error) { return m.guest, nil }}
	go func() {
		b.Run(gctx, d)
		close(m.done)
	}()
	hm, err := transport.NewMuxHost(m.host)
	m.mux = hm
	return err
}

func (m *machine) Agent() transport.Listener { return m.mux }

func (m *machine) AddSCSIDisk(ctx context.Context, path string, ro bool) (vm.Disk, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for lun := uint8(0); ; lun++ {
		if _, used := m.luns[lun]; !used {
			if err := m.log.add(fmt.Sprintf("host attach %s lun=%d", filepath.Base(path), lun)); err != nil {
				return vm.Disk{}, err
			}
			if m.plug != nil {
				if err := m.plug(path, lun, ro); err != nil {
					return vm.Disk{}, err
				}
			}
			m.luns[lun] = path
			return vm.Disk{LUN: lun}, nil
		}
	}
}

func (m *machine) RemoveSCSIDisk(ctx context.Context, d vm.Disk) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.luns, d.LUN)
	if m.unplug != nil {
		m.unplug(d.LUN)
	}
	return m.log.add(fmt.Sprintf("host detach lun=%d", d.LUN))
}

func (m *machine) AddPMem(ctx context.Context, path string) (uint32, error) {
	return 0, errors.ErrUnsupported
}

func (m *machine) attached() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.luns)
}

func (m *machine) Shutdown(ctx context.Context) error {
	if m.cancel != nil {
		m.cancel()
	}
	if m.mux != nil {
		m.mux.Close()
	}
	m.host.Close()
	m.guest.Close()
	<-m.done
	return nil
}
func (m *machine) Done() <-chan struct{} { return m.done }

func start(t *testing.T, m *machine, opts Options) *UVM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := Start(ctx, m, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Shutdown(context.Background()) })
	return u
}

func TestStartNegotiatesOverTheChannel(t *testing.T) {
	m := newMachine(t)
	u := start(t, m, Options{})
	ctx := context.Background()
	gc := u.GuestConnection()
	if gc.Version() != 4 {
		t.Fatalf("version %d", gc.Version())
	}
	if _, err := gc.DumpStacks(ctx); err != nil {
		t.Fatal(err)
	}
	if err := u.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after Shutdown")
	}
}

func TestStartFailsWhenTheMachineStops(t *testing.T) {
	m := &dead{*newMachine(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Start(ctx, m, Options{}); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("start on a machine that stopped: %v", err)
	}
}

// dead is a machine that stops at once, before any agent runs.
type dead struct{ machine }

func (d *dead) Start(ctx context.Context) error {
	hm, err := transport.NewMuxHost(d.host)
	d.mux = hm
	close(d.done)
	return err
}
func (d *dead) Shutdown(ctx context.Context) error { d.host.Close(); d.guest.Close(); return nil }

// TestSharedLayerOneAttachment: two containers' layers of one file are
// one attachment and one mount; the last release unmounts, has the guest
// let go, then detaches, in that order.
func TestSharedLayerOneAttachment(t *testing.T) {
	m := newMachine(t)
	u := start(t, m, Options{})
	ctx := context.Background()
	layer := filepath.Join(t.TempDir(), "layer.img")
	a, err := u.AddSCSI(ctx, layer, SCSIOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := u.AddSCSI(ctx, layer, SCSIOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if a.GuestPath() != "/run/layers/p0" || b.GuestPath() != a.GuestPath() {
		t.Fatalf("guest paths %q %q", a.GuestPath(), b.GuestPath())
	}
	want := []string{"host attach layer.img lun=0", "guest Add MappedVirtualDisk /run/layers/p0"}
	if got := m.log.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("add twice:\n got %q\nwant %q", got, want)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx); err != nil { // a second Release of one handle is a no-op
		t.Fatal(err)
	}
	if got := m.log.take(); len(got) != 0 {
		t.Fatalf("release of one of two references did %q", got)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	want = []string{"guest Remove MappedVirtualDisk /run/layers/p0", "guest Remove SCSIDevice lun=0", "host detach lun=0"}
	if got := m.log.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("last release:\n got %q\nwant %q", got, want)
	}
	if n := len(u.Resources()); n != 0 {
		t.Fatalf("%d resources left", n)
	}
	// A writable disk has one holder.
	s, err := u.AddSCSI(ctx, layer, SCSIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.AddSCSI(ctx, layer, SCSIOptions{}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second holder of a writable disk: %v", err)
	}
	s.Release(ctx)
}

// TestFailedMountIsUndone: a disk the guest cannot mount is detached
// again, and the error says why.
func TestFailedMountIsUndone(t *testing.T) {
	m := newMachine(t)
	u := start(t, m, Options{})
	ctx := context.Background()
	m.log.failOn = "guest Add MappedVirtualDisk /run/layers/p0"
	_, err := u.AddSCSI(ctx, filepath.Join(t.TempDir(), "bad.img"), SCSIOptions{ReadOnly: true})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("AddSCSI = %v, want the guest's refusal as InvalidArgument", err)
	}
	want := []string{"host attach bad.img lun=0", "guest Add MappedVirtualDisk /run/layers/p0", "guest Remove SCSIDevice lun=0", "host detach lun=0"}
	if got := m.log.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("failed add:\n got %q\nwant %q", got, want)
	}
	if m.attached() != 0 || len(u.Resources()) != 0 {
		t.Fatalf("left: %d disks, %v", m.attached(), u.Resources())
	}
}

// TestFailedReleaseCanBeRetried: an unmount the guest refuses leaves the
// disk attached and listed as broken; releasing again finishes the job.
func TestFailedReleaseCanBeRetried(t *testing.T) {
	m := newMachine(t)
	u := start(t, m, Options{})
	ctx := context.Background()
	r, err := u.AddSCSI(ctx, filepath.Join(t.TempDir(), "l.img"), SCSIOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	m.log.take()
	m.log.failOn = "guest Remove MappedVirtualDisk /run/layers/p0"
	if err := r.Release(ctx); err == nil {
		t.Fatal("release succeeded though the unmount failed")
	}
	if res := u.Resources(); len(res) != 1 || res[0].Broken == "" || m.attached() != 1 {
		t.Fatalf("after a failed release: %+v, %d attached", res, m.attached())
	}
	m.log.failOn = ""
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if len(u.Resources()) != 0 || m.attached() != 0 {
		t.Fatalf("after the retry: %+v, %d attached", u.Resources(), m.attached())
	}
}

// TestReattachReleasesWhatAnotherProcessAdded: a UVM that detaches and
// is attached again (as by a restarted host process) finds its resources
// in the state file and releases them.
func TestReattachReleasesWhatAnotherProcessAdded(t *testing.T) {
	m := newMachine(t)
	stateFile := filepath.Join(t.TempDir(), "uvm.json")
	u := start(t, m, Options{StateFile: stateFile})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	if _, err := u.AddSCSI(ctx, filepath.Join(dir, "a.img"), SCSIOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := u.AddSCSI(ctx, filepath.Join(dir, "a.img"), SCSIOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	if err := u.Detach(); err != nil {
		t.Fatal(err)
	}
	m.log.take()
	u2, err := Attach(ctx, m, Options{StateFile: stateFile})
	if err != nil {
		t.Fatal(err)
	}
	res := u2.Resources()
	if len(res) != 1 || res[0].Refs != 2 || res[0].GuestPath != "/run/layers/p0" {
		t.Fatalf("reattached table: %+v", res)
	}
	for range 2 {
		if err := u2.release(ctx, res[0].Key); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"guest Remove MappedVirtualDisk /run/layers/p0", "guest Remove SCSIDevice lun=0", "host detach lun=0"}
	if got := m.log.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("release after reattach:\n got %q\nwant %q", got, want)
	}
	u2.Shutdown(ctx)
}

// TestShareAtFixedPath: AddShareAt mounts a directory where the caller
// says (a container's root), has one holder, and its Release unmounts it.
func TestShareAtFixedPath(t *testing.T) {
	dir := t.TempDir()
	m := newMachine(t)
	u := start(t, m, Options{Sharer: Tags{dir: "root0"}})
	ctx := context.Background()
	root := RootPath("c1")
	r, err := u.AddShareAt(ctx, dir, root, false)
	if err != nil {
		t.Fatal(err)
	}
	if r.GuestPath() != root {
		t.Fatalf("guest path %q, want %q", r.GuestPath(), root)
	}
	if got, want := m.log.take(), []string{"guest Add MappedDirectory " + root}; !reflect.DeepEqual(got, want) {
		t.Fatalf("add:\n got %q\nwant %q", got, want)
	}
	if _, err := u.AddShareAt(ctx, dir, root, false); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second share at %s: %v", root, err)
	}
	for _, bad := range []string{"", "rel/path", "/a/../b", "/"} {
		if _, err := u.AddShareAt(ctx, dir, bad, false); !errdefs.IsInvalidArgument(err) {
			t.Errorf("guest path %q: %v", bad, err)
		}
	}
	if _, err := u.AddShareAt(ctx, filepath.Join(dir, "not-shared"), RootPath("c2"), true); !errdefs.IsNotFound(err) {
		t.Fatalf("a directory the sharer does not offer: %v", err)
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := m.log.take(), []string{"guest Remove MappedDirectory " + root}; !reflect.DeepEqual(got, want) {
		t.Fatalf("release:\n got %q\nwant %q", got, want)
	}
	if n := len(u.Resources()); n != 0 {
		t.Fatalf("%d resources left", n)
	}
}
