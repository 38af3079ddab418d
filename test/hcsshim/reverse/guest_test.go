package reverse

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/transport"
)

// Environment of the helper that turns this test binary into hcsshim's
// guest: see helperMain.
const (
	envHelper    = "UVMGCS_REVERSE_HELPER"      // the hcsshim gcs binary
	envCgroups   = "UVMGCS_REVERSE_CGROUPS"     // the run's cgroup tree, one dir per line
	envMounts    = "UVMGCS_REVERSE_HIERARCHIES" // mountpoint=options, one per line
	envTransport = "UVMGCS_UNIX_TRANSPORT_DIR"  // read by the patched cmd/gcs
)

// guest is hcsshim's gcs running on this host, and its socket directory.
type guest struct {
	dir      string
	listener net.Listener
	cmd      *exec.Cmd
	exited   chan struct{}
	cgroups  *cgroupTree
	log      string
}

// startGuest starts hcsshim's gcs in a private mount namespace (private
// /run, cgroup v2 unmounted) and a cgroup namespace rooted in a cgroup tree
// of the test's own; it is stopped and everything it made removed at the
// end of the test.
func startGuest(t testing.TB) *guest {
	t.Helper()
	// Socket paths are short: not under the test's temp dir.
	dir, err := os.MkdirTemp("", "rev")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	g := &guest{dir: dir, exited: make(chan struct{})}
	g.log = filepath.Join(t.TempDir(), "gcs.log")
	l, err := transport.Unix{Dir: g.dir}.Listen(transport.BridgePort)
	if err != nil {
		t.Fatal(err)
	}
	g.listener = l
	cg, err := newCgroupTree(fmt.Sprintf("uvmgcs-reverse-%d-%08x", os.Getpid(), rand.Uint32()))
	if err != nil {
		l.Close()
		t.Fatalf("cgroup tree: %v", err)
	}
	g.cgroups = cg
	var hier []string
	for _, h := range cg.hs {
		hier = append(hier, h.mountpoint+"="+h.opts)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(self)
	g.cmd.Env = append(os.Environ(),
		envHelper+"="+hcsshimGCS,
		envCgroups+"="+strings.Join(cg.dirs, "\n"),
		envMounts+"="+strings.Join(hier, "\n"),
		envTransport+"="+g.dir,
	)
	logf, err := os.Create(g.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	g.cmd.SysProcAttr = &syscall.SysProcAttr{
		Unshareflags: syscall.CLONE_NEWNS, // Go makes / rprivate in it
		Pdeathsig:    syscall.SIGKILL,
		Setpgid:      true,
	}
	if err := g.cmd.Start(); err != nil {
		l.Close()
		cg.remove()
		t.Fatal(err)
	}
	go func() {
		g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() { g.stop(t) })
	return g
}

// stop kills the guest and everything in its cgroup tree, removes the tree
// and reports the guest's log when the test failed.
func (g *guest) stop(t testing.TB) {
	_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
	<-g.exited
	if err := g.cgroups.remove(); err != nil {
		t.Errorf("cgroups left behind: %v", err)
	}
	g.listener.Close()
	if t.Failed() {
		if b, err := os.ReadFile(g.log); err == nil {
			t.Logf("hcsshim gcs log (last 8 KiB):\n%s", tail(b, 8<<10))
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// connect takes the guest's next bridge connection and negotiates.
func (g *guest) connect(t testing.TB) *host.GuestConnection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := g.listener.Accept()
		ch <- result{c, err}
	}()
	var c net.Conn
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		c = r.c
	case <-g.exited:
		b, _ := os.ReadFile(g.log)
		t.Fatalf("hcsshim gcs exited before connecting:\n%s", tail(b, 8<<10))
	case <-ctx.Done():
		b, _ := os.ReadFile(g.log)
		t.Fatalf("hcsshim gcs did not connect:\n%s", tail(b, 8<<10))
	}
	gc, err := host.Connect(ctx, c, host.Config{IO: transport.Unix{Dir: g.dir}})
	if err != nil {
		c.Close()
		t.Fatalf("negotiate: %v", err)
	}
	t.Cleanup(func() { gc.Close() })
	return gc
}

// helperMain runs in the child startGuest starts, already in a private mount
// namespace: it enters the run's cgroup tree, unshares a cgroup namespace
// there, mounts the v1 hierarchies again so that they show that namespace,
// unmounts cgroup v2 (else hcsshim's guest picks v2 and fails on this
// hybrid host), gives the guest a private /run and executes it.
func helperMain(bin string) {
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "reverse helper: "+format+"\n", args...)
		os.Exit(2)
	}
	runtime.LockOSThread() // the cgroup namespace is this thread's until exec
	cg := &cgroupTree{dirs: strings.Split(os.Getenv(envCgroups), "\n")}
	if err := cg.enter(); err != nil {
		fail("%v", err)
	}
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		fail("unshare cgroup namespace: %v", err)
	}
	for _, h := range strings.Split(os.Getenv(envMounts), "\n") {
		mp, opts, _ := strings.Cut(h, "=")
		// The kernel refuses a superblock mounted again over its own root.
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			fail("unmount %s: %v", mp, err)
		}
		if err := unix.Mount("cgroup", mp, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
			fail("mount cgroup %s on %s: %v", opts, mp, err)
		}
	}
	if err := unix.Unmount("/sys/fs/cgroup/unified", unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		fail("unmount cgroup v2: %v", err)
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		fail("private /run: %v", err)
	}
	args := []string{bin, "-v4", "-loglevel", "debug", "-kmsgLogLevel", "0", "-disable-time-sync", "-scrub-logs=false"}
	if err := unix.Exec(bin, args, os.Environ()); err != nil {
		fail("exec %s: %v", bin, err)
	}
}
