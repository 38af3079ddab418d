package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // joins namespaces for the container init below
	"github.com/sirupsen/logrus"
	"github.com/uvmgcs/gcs/guest/storage/storagetest"
	"golang.org/x/sys/unix"
)

// The tests of this package run a real agent as root, and the fuzz target
// feeds it arbitrary requests, ExecuteProcess among them: whatever a
// request makes it do must stay in the test's own sandbox. TestMain
// re-executes the test binary confined:
//
//   - its own cgroup in every hierarchy (cgroupName), made the root of a
//     cgroup namespace whose cgroup file systems are mounted afresh, so the
//     agent's cgroups (CgroupParent and any path a spec names) land beneath
//     it; the outer process removes it afterwards;
//   - private mount, network and PID namespaces: mounts, pod network
//     namespaces (bind mounts) and links never reach the machine, a signal
//     to -1 reaches only the test's processes, and the namespace's init
//     (the test binary, or the fuzz coordinator) takes every orphan down
//     with it;
//   - no copies of other programs' namespace mounts (nsfs), which would
//     keep their namespaces alive;
//   - every mount read-only except /dev, /dev/pts, the fresh cgroup mounts, a tmpfs
//     for temporary directories (TMPDIR, where state roots go) and the
//     directories the test framework writes (its -test.* output files, the
//     fuzz cache, testdata): a process the fuzzer starts cannot write to
//     the machine's files.
//
// confinedEnv says which stage a process is in: unset (outer), "setup"
// (first process inside, which sets up the mounts), "ready" (set up; fuzz
// workers inherit it).
const confinedEnv = "UVMGCS_AGENT_TEST_CONFINED"

// confinement is what tests learn of the sandbox they run in; empty when
// it could not be set up (tests that need it then skip, loudly).
var confinement struct {
	ok      bool
	why     string
	tmp     string   // the writable tmpfs
	cgroups []string // the fresh cgroup mounts
}

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // a container's init: never returns
	}
	logrus.SetOutput(io.Discard) // the agent's refusals are expected here
	switch os.Getenv(confinedEnv) {
	case "":
		code, err := runConfined()
		if err != nil {
			fmt.Fprintf(os.Stderr, "agent tests: cannot confine (%v); tests that need it skip\n", err)
			confinement.why = err.Error()
			os.Exit(m.Run())
		}
		os.Exit(code)
	case "setup":
		if err := setUpInside(); err != nil {
			fmt.Fprintf(os.Stderr, "agent tests: setting up the sandbox: %v\n", err)
			os.Exit(2)
		}
		os.Setenv(confinedEnv, "ready")
	}
	if err := loadConfinement(); err != nil {
		fmt.Fprintf(os.Stderr, "agent tests: %v\n", err)
		os.Exit(2)
	}
	code := m.Run()
	if os.Getenv(confinedEnv) == "ready" && os.Getpid() == 1 {
		// This process is the PID namespace's init: it is reaped only once
		// every process in the namespace has died, and a frozen one (a
		// container paused when a test or a fuzz worker died) never does.
		for _, root := range confinement.cgroups {
			killAndThaw(root)
		}
	}
	os.Exit(code)
}

// requireConfined skips a test that must not run outside the sandbox.
func requireConfined(t testing.TB) {
	t.Helper()
	if !confinement.ok {
		t.Skipf("SKIPPED: the agent's sandbox (root, namespaces, cgroups) is unavailable: %s", confinement.why)
	}
}

// hierarchy is one mounted cgroup hierarchy.
type hierarchy struct {
	mountPoint, fstype, superOpts, root string
}

// runConfined re-executes the test binary in the sandbox and returns its
// exit code.
func runConfined() (int, error) {
	if os.Geteuid() != 0 {
		return 0, errors.New("not root")
	}
	mounts, err := storagetest.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	own, err := ownCgroups()
	if err != nil {
		return 0, err
	}
	tmp, err := os.MkdirTemp("", "uvmgcs-agent-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	name := "uvmgcs-agent-test-" + strconv.Itoa(os.Getpid()) + "-" + filepath.Base(tmp)[len("uvmgcs-agent-test-"):]
	var moved []hierarchy
	var made []string
	back := func() {
		for _, h := range moved {
			os.WriteFile(filepath.Join(cgroupDir(h, own), "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
		}
	}
	defer func() {
		back()
		for _, dir := range made {
			killAndThaw(dir)
		}
		time.Sleep(100 * time.Millisecond)
		for _, dir := range made {
			if err := removeCgroupTree(dir); err != nil {
				fmt.Fprintf(os.Stderr, "agent tests: cgroup left behind: %v\n", err)
			}
		}
	}()
	for _, mi := range mounts {
		if mi.FSType != "cgroup" && mi.FSType != "cgroup2" {
			continue
		}
		h := hierarchy{mountPoint: mi.MountPoint, fstype: mi.FSType, superOpts: mi.SuperOptions, root: mi.Root}
		parent := cgroupDir(h, own)
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return 0, fmt.Errorf("cgroup %s: %w", dir, err)
		}
		made = append(made, dir)
		if strings.Contains(","+mi.SuperOptions+",", ",cpuset,") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(parent, f))
				if err != nil {
					return 0, err
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0); err != nil {
					return 0, fmt.Errorf("%s/%s: %w", dir, f, err)
				}
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return 0, fmt.Errorf("join %s: %w", dir, err)
		}
		moved = append(moved, h)
	}
	if len(made) == 0 {
		return 0, errors.New("no cgroup hierarchies mounted")
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), confinedEnv+"=setup", "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:   syscall.CLONE_NEWPID,
		Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET | unix.CLONE_NEWCGROUP,
		Pdeathsig:    syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start confined: %w", err)
	}
	// The child is in the cgroups; this process goes back to its own so
	// the run's cgroups can be removed once the child is done.
	back()
	moved = nil
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() < 0 {
			fmt.Fprintf(os.Stderr, "agent tests: confined run: %v\n", err)
			return 1, nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}

// cgroupDir is where this process's cgroup of h is on the file system.
func cgroupDir(h hierarchy, own map[string]string) string {
	key := "" // cgroup2
	if h.fstype == "cgroup" {
		key = controllers(h.superOpts)
	}
	p := strings.TrimPrefix(own[key], h.root)
	return filepath.Join(h.mountPoint, p)
}

// controllers is the controller list of a cgroup v1 mount's options, as
// /proc/self/cgroup names it.
func controllers(superOpts string) string {
	var cs []string
	for _, o := range strings.Split(superOpts, ",") {
		switch {
		case o == "rw" || o == "ro" || o == "xattr" || o == "noprefix" || o == "clone_children" ||
			strings.HasPrefix(o, "release_agent="):
		default:
			cs = append(cs, o)
		}
	}
	return strings.Join(cs, ",")
}

// ownCgroups maps /proc/self/cgroup's controller lists to paths.
func ownCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	own := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 {
			own[f[1]] = f[2]
		}
	}
	return own, nil
}

// killAndThaw SIGKILLs every process but this one in the cgroup tree at
// dir and thaws its frozen cgroups, so the processes can act on the
// signal.
func killAndThaw(dir string) {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(filepath.Join(p, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
					unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
		os.WriteFile(filepath.Join(p, "freezer.state"), []byte("THAWED"), 0)
		return nil
	})
}

// removeCgroupTree removes dir and the cgroups beneath it, deepest first.
func removeCgroupTree(dir string) error {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var errs []error
	for _, d := range dirs {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// setUpInside runs first inside the namespaces: a fresh /proc for the PID
// namespace, the writable directories, everything else read-only, and
// cgroup file systems rooted at the cgroup namespace.
func setUpInside() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	tmp := os.Getenv("TMPDIR")
	if tmp == "" {
		return errors.New("no TMPDIR")
	}
	writable := []string{}
	for _, a := range os.Args[1:] {
		name, val, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok || !strings.HasPrefix(name, "test.") || val == "" {
			continue
		}
		switch strings.TrimPrefix(name, "test.") {
		case "fuzzcachedir", "gocoverdir", "outputdir":
			writable = append(writable, val)
		case "testlogfile", "coverprofile", "cpuprofile", "memprofile", "blockprofile", "mutexprofile", "trace":
			writable = append(writable, filepath.Dir(val))
		}
	}
	if err := os.MkdirAll("testdata/fuzz", 0o755); err == nil {
		writable = append(writable, "testdata")
	}
	for i, w := range writable {
		abs, err := filepath.Abs(w)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return err
		}
		writable[i] = abs
		if err := unix.Mount(abs, abs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", abs, err)
		}
	}
	mounts, err := storagetest.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	keep := func(mp string) bool {
		// Device nodes stay usable: /dev/null, /dev/ptmx and terminals.
		if mp == "/dev" || mp == "/dev/pts" {
			return true
		}
		for _, w := range writable {
			if mp == w || strings.HasPrefix(mp, w+"/") {
				return true
			}
		}
		return false
	}
	var hierarchies []hierarchy
	for _, mi := range mounts {
		if mi.FSType == "nsfs" {
			// Another program's namespace (ip netns, another test): the
			// sandbox's copy would keep it alive after its owner deletes it.
			if err := unix.Unmount(mi.MountPoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("detach %s: %w", mi.MountPoint, err)
			}
			continue
		}
		if mi.FSType == "cgroup" || mi.FSType == "cgroup2" {
			hierarchies = append(hierarchies, hierarchy{mountPoint: mi.MountPoint, fstype: mi.FSType, superOpts: mi.SuperOptions})
			continue
		}
		if keep(mi.MountPoint) || readOnly(mi) {
			continue
		}
		flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | mountFlags(mi))
		if err := unix.Mount("", mi.MountPoint, "", flags, ""); err != nil {
			// A mount hidden beneath another cannot be reached anyway.
			if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("read-only %s: %w", mi.MountPoint, err)
			}
		}
	}
	for _, h := range hierarchies {
		data := controllers(h.superOpts)
		if h.fstype == "cgroup2" {
			data = ""
		}
		// The kernel refuses a superblock on a mount point it is already
		// mounted on: the outer view goes first.
		if err := unix.Unmount(h.mountPoint, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", h.mountPoint, err)
		}
		if err := unix.Mount(h.fstype, h.mountPoint, h.fstype, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
			return fmt.Errorf("mount %s at %s: %w", h.fstype, h.mountPoint, err)
		}
	}
	if err := unix.Mount("tmpfs", tmp, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return fmt.Errorf("tmpfs at %s: %w", tmp, err)
	}
	return nil
}

// loadConfinement checks the sandbox a confined process runs in.
func loadConfinement() error {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !strings.HasSuffix(l, ":/") {
			return fmt.Errorf("not at the root of a cgroup namespace: %q", l)
		}
	}
	for _, p := range []string{"/", "/etc", "/usr", "/root", "/var/tmp", "/dev/shm", "/work"} {
		f := filepath.Join(p, ".uvmgcs-agent-test-write-probe")
		if err := os.WriteFile(f, nil, 0o600); !errors.Is(err, unix.EROFS) && !errors.Is(err, os.ErrNotExist) {
			os.Remove(f)
			return fmt.Errorf("%s is writable in the sandbox (%v)", p, err)
		}
	}
	mounts, err := storagetest.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, mi := range mounts {
		if mi.FSType == "cgroup" || mi.FSType == "cgroup2" {
			confinement.cgroups = append(confinement.cgroups, mi.MountPoint)
		}
	}
	confinement.tmp = os.Getenv("TMPDIR")
	confinement.ok = true
	return nil
}

// readOnly reports whether a mount is read-only.
func readOnly(m storagetest.Mount) bool { return strings.HasPrefix(m.Options, "ro") }

// keptFlags are the per-mount flags a read-only remount keeps.
var keptFlags = map[string]int{
	"nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV, "noexec": unix.MS_NOEXEC,
	"noatime": unix.MS_NOATIME, "nodiratime": unix.MS_NODIRATIME, "relatime": unix.MS_RELATIME,
}

// mountFlags are m's flags that a read-only remount keeps.
func mountFlags(m storagetest.Mount) int {
	f := 0
	for _, o := range strings.Split(m.Options, ",") {
		f |= keptFlags[o]
	}
	return f
}
