// Package containerd tests containerd-shim-uvmgcs-v1 against real
// containerd daemons: Debian's containerd 1.6 and containerd 2.4.2 built
// from the module proxy, each started once per test run with a private
// root, state, socket and configuration. The tests import images they
// build themselves and drive everything with ctr, the way a user would.
package containerd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RuntimeName is the shim's runtime type.
const RuntimeName = "io.containerd.uvmgcs.v1"

// namespace every test works in.
const namespace = "uvmgcs-test"

// repoRoot is the repository, found from this file.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// versions are the containerds under test: name, containerd, ctr.
type version struct {
	name, containerd, ctr string
	erofs                 bool // has the erofs snapshotter
}

func versions() []version {
	c2 := os.Getenv("UVMGCS_CONTAINERD2_DIR")
	if c2 == "" {
		c2 = filepath.Join(repoRoot(), "out", "cache", "containerd-v2.4.2")
	}
	return []version{
		{"1.6", "/usr/bin/containerd", "/usr/bin/ctr", false},
		{"2.4.2", filepath.Join(c2, "containerd"), filepath.Join(c2, "ctr"), true},
	}
}

// suite is what the whole run shares: the built shim, the images, one
// daemon per containerd version.
var suite struct {
	dir           string // everything of this run
	binDir        string // the shim
	busybox       string // OCI archives
	layered       string
	kernel        string
	initrd        string
	missing       string // why nothing can run, or ""
	mu            sync.Mutex
	daemons       map[string]*daemon
	daemonErrs    map[string]error
	importedFor   map[string]bool
	importedMutex sync.Mutex
}

func setup() (string, error) {
	if os.Geteuid() != 0 {
		return "containerd tests need root", nil
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "qemu-system-x86_64 is not installed (make all installs it)", nil
	}
	out := filepath.Join(repoRoot(), "out")
	suite.kernel, suite.initrd = filepath.Join(out, "vmlinux"), filepath.Join(out, "initrd.img")
	for _, f := range []string{suite.kernel, suite.initrd} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Sprintf("%s is missing: run make all", f), nil
		}
	}
	dir, err := os.MkdirTemp("", "uvmgcs-ctd-")
	if err != nil {
		return "", err
	}
	suite.dir = dir
	suite.binDir = filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", filepath.Join(suite.binDir, "containerd-shim-uvmgcs-v1"), "./cmd/containerd-shim-uvmgcs-v1")
	build.Dir = repoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the shim: %v: %s", err, b)
	}
	if suite.busybox, suite.layered, err = buildImages(dir); err != nil {
		return "", err
	}
	suite.daemons = map[string]*daemon{}
	suite.daemonErrs = map[string]error{}
	suite.importedFor = map[string]bool{}
	return "", nil
}

func TestMain(m *testing.M) {
	why, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/containerd setup:", err)
		os.Exit(1)
	}
	if why != "" {
		suite.missing = why
		fmt.Fprintln(os.Stderr, "##############################################################")
		fmt.Fprintln(os.Stderr, "## SKIPPING test/containerd:", why)
		fmt.Fprintln(os.Stderr, "##############################################################")
	}
	code := m.Run()
	for _, d := range suite.daemons {
		d.stop()
	}
	if suite.dir != "" {
		if code == 0 && os.Getenv("UVMGCS_TEST_KEEP") == "" {
			os.RemoveAll(suite.dir)
		} else {
			fmt.Fprintln(os.Stderr, "test/containerd: logs kept in", suite.dir)
		}
	}
	os.Exit(code)
}

// forEach runs f as a subtest against every containerd version, each with
// its daemon (started on first use) and the test images imported.
func forEach(t *testing.T, f func(t *testing.T, d *daemon)) {
	if suite.missing != "" {
		t.Skip(suite.missing)
	}
	for _, v := range versions() {
		t.Run("containerd-"+v.name, func(t *testing.T) {
			d := getDaemon(t, v)
			t.Cleanup(func() { d.checkClean(t) }) // after the test's own cleanups
			f(t, d)
		})
	}
}

func getDaemon(t testing.TB, v version) *daemon {
	t.Helper()
	suite.mu.Lock()
	defer suite.mu.Unlock()
	if err := suite.daemonErrs[v.name]; err != nil {
		t.Fatal(err)
	}
	if d := suite.daemons[v.name]; d != nil {
		return d
	}
	for _, b := range []string{v.containerd, v.ctr} {
		if _, err := os.Stat(b); err != nil {
			err = fmt.Errorf("containerd %s: %w (make containerd-deps installs and builds both versions)", v.name, err)
			suite.daemonErrs[v.name] = err
			t.Fatal(err)
		}
	}
	d, err := newDaemon(v)
	if err == nil {
		err = d.start()
	}
	if err == nil {
		for _, img := range []string{suite.busybox, suite.layered} {
			if _, err = d.ctrOK(context.Background(), "images", "import", img); err != nil {
				break
			}
		}
	}
	if err != nil {
		suite.daemonErrs[v.name] = err
		if d != nil {
			d.stop()
		}
		t.Fatal(err)
	}
	suite.daemons[v.name] = d
	return d
}

// daemon is one containerd with everything private to this run.
type daemon struct {
	v                       version
	dir, sock, config, shim string // shim: UVMGCS_SHIM_STATE
	shimConfig              string
	layers                  string
	cmd                     *exec.Cmd
	exited                  chan struct{}
	log                     *os.File
}

func newDaemon(v version) (*daemon, error) {
	dir := filepath.Join(suite.dir, "ctd-"+v.name)
	d := &daemon{v: v, dir: dir, sock: filepath.Join(dir, "c.sock"), config: filepath.Join(dir, "config.toml"),
		shim: filepath.Join(dir, "shim"), shimConfig: filepath.Join(dir, "shim.toml"), layers: filepath.Join(dir, "layers")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.sock, filepath.Join(dir, "opt"))
	if v.erofs {
		// Block mode: each container's writable layer is an ext4 image.
		cfg += "[plugins.\"io.containerd.snapshotter.v1.erofs\"]\n  default_size = \"64M\"\n"
	}
	shimCfg := fmt.Sprintf("kernel = %q\ninitrd = %q\nlayer_cache = %q\nscratch_mib = 256\nconsole_log = %q\n",
		suite.kernel, suite.initrd, d.layers, filepath.Join(dir, "console.log"))
	for p, b := range map[string]string{d.config: cfg, d.shimConfig: shimCfg} {
		if err := os.WriteFile(p, []byte(b), 0o600); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *daemon) start() error {
	f, err := os.OpenFile(filepath.Join(d.dir, "containerd.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	d.log = f
	cmd := exec.Command(d.v.containerd, "--config", d.config, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "PATH="+suite.binDir+":"+os.Getenv("PATH"), "UVMGCS_SHIM_STATE="+d.shim)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return err
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, code := d.ctr(context.Background(), "version"); code == 0 {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("containerd %s exited at start; see %s", d.v.name, f.Name())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("containerd %s did not answer within 30s; see %s", d.v.name, f.Name())
}

// stop ends the daemon (SIGTERM; SIGKILL after 10 s). Shims keep running.
func (d *daemon) stop() {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
	d.cmd = nil
	d.log.Close()
}

// restart stops and starts containerd on the same root and state.
func (d *daemon) restart() error {
	d.stop()
	return d.start()
}

// ctr runs ctr against the daemon and returns stdout, stderr and the exit
// code.
func (d *daemon) ctr(ctx context.Context, args ...string) (string, string, int) {
	return d.ctrIn(ctx, nil, args...)
}

func (d *daemon) ctrIn(ctx context.Context, stdin []byte, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.v.ctr, append([]string{"--address", d.sock, "--namespace", namespace}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errb.String(), code
}

// ctrOK runs ctr and fails unless it exits 0.
func (d *daemon) ctrOK(ctx context.Context, args ...string) (string, error) {
	out, errs, code := d.ctr(ctx, args...)
	if code != 0 {
		return out, fmt.Errorf("ctr %s: exit %d: %s%s", strings.Join(args, " "), code, out, errs)
	}
	return out, nil
}

// runArgs are ctr run's arguments for our runtime and configuration.
func (d *daemon) runArgs(extra ...string) []string {
	return append([]string{"run", "--runtime", RuntimeName, "--runtime-config-path", d.shimConfig}, extra...)
}

// id is a short task id unique to this run's daemon.
func (d *daemon) id() string { return strings.ReplaceAll(d.v.name, ".", "") }
