package cri

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host/podnet/cnitest"
	"github.com/uvmgcs/gcs/internal/ociimage"
)

// Handlers are the CRI runtime handlers every node declares.
const (
	HandlerRunc   = "runc"   // io.containerd.runc.v2
	HandlerUVMGCS = "uvmgcs" // io.containerd.uvmgcs.v1
)

// k8sNamespace is the containerd namespace of the CRI plugin.
const k8sNamespace = "k8s.io"

// repoRoot is the repository, found from this file.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// toolsDir holds crictl and critest (make cri-tools).
func toolsDir() string {
	if d := os.Getenv("UVMGCS_CRI_TOOLS_DIR"); d != "" {
		return d
	}
	return filepath.Join(repoRoot(), "out", "cache", "cri-tools-v1.37.0")
}

// version is a containerd under test: its binaries and which config
// schema it reads.
type version struct {
	name, containerd, ctr string
	v2                    bool // containerd 2.x: config version 3, CRI split in plugins
}

// containerd16 is Debian's; containerd2 is v2.4.2 built from the module
// proxy (make cri-deps) into out/cache, or $UVMGCS_CONTAINERD2_DIR.
func containerd16() version {
	return version{"1.6", "/usr/bin/containerd", "/usr/bin/ctr", false}
}

func containerd2() version {
	d := os.Getenv("UVMGCS_CONTAINERD2_DIR")
	if d == "" {
		d = filepath.Join(repoRoot(), "out", "cache", "containerd-v2.4.2")
	}
	return version{"2.4.2", filepath.Join(d, "containerd"), filepath.Join(d, "ctr"), true}
}

// missing says why a CRI node of containerd v cannot run here, or "".
func missing(v version) string {
	if why := cnitest.Missing(); why != "" {
		return why
	}
	shim := filepath.Join(filepath.Dir(v.containerd), "containerd-shim-runc-v2")
	for _, b := range []string{v.containerd, v.ctr, shim, "/usr/sbin/runc", "/usr/bin/nsenter"} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Sprintf("%s is missing (make cri-deps installs containerd 1.6 and runc, builds containerd 2.4.2)", b)
		}
	}
	if _, err := os.Stat(filepath.Join(toolsDir(), "crictl")); err != nil {
		return "crictl is missing in " + toolsDir() + " (make cri-tools builds it)"
	}
	return ""
}

// node is one containerd with its CRI plugin in a network namespace of
// its own: what a Kubernetes node's runtime is.
type node struct {
	t                testing.TB
	v                version
	id               string // random, in every system-wide name
	dir              string
	netns            string // path of the namespace containerd and every client run in
	sock, config     string
	cniConf, cniData string
	cgroupParent     string // pods' cgroup parent, removed at the end
	ownsCRICgroup    bool   // criCgroup was made by this node, removed at the end
	cmd              *exec.Cmd
	exited           chan struct{}
	log              *os.File
}

// newNode starts containerd in a fresh network namespace with the test
// images imported, and registers its teardown: every pod removed,
// containerd stopped, its shims gone, mounts under its root unmounted,
// the pods' cgroups and the namespace removed.
func newNode(t *testing.T, v version) *node {
	t.Helper()
	if why := missing(v); why != "" {
		t.Skip("SKIP (loud): " + why)
	}
	b := make([]byte, 4)
	rand.Read(b)
	n := &node{t: t, v: v, id: hex.EncodeToString(b), dir: t.TempDir()}
	if os.Getenv("UVMGCS_TEST_KEEP") != "" {
		// Kept for reading after the run: logs, configs, the registry.
		dir, err := os.MkdirTemp("", "uvmgcs-cri-")
		if err != nil {
			t.Fatal(err)
		}
		n.dir = dir
		t.Logf("node directory (kept): %s", dir)
	}
	n.netns = cnitest.NewNetNS(t, "uvmgcs-cri") // its Cleanup runs last
	n.sock = filepath.Join(n.dir, "containerd.sock")
	n.config = filepath.Join(n.dir, "config.toml")
	n.cniConf, n.cniData = filepath.Join(n.dir, "net.d"), filepath.Join(n.dir, "cni-data")
	n.cgroupParent = "/uvmgcs-cri-" + n.id
	n.ownsCRICgroup = !cgroupExists(criCgroup)
	if err := n.writeConfig(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.teardown)
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	imgs, err := testImages(n.dir)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(n.dir, "images.tar")
	if err := ociimage.WriteImages(archive, imgs); err != nil {
		t.Fatal(err)
	}
	if out, err := n.run(n.v.ctr, "--address", n.sock, "--namespace", k8sNamespace, "images", "import", archive); err != nil {
		t.Fatalf("ctr images import: %v: %s", err, out)
	}
	return n
}

func (n *node) writeConfig() error {
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "uvmgcs-cri",
  "plugins": [
    {"type": "bridge", "bridge": "cri0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.88.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.cniData)
	shimConfig, err := n.writeShimConfig()
	if err != nil {
		return err
	}
	cfg := criConfig(n.v, configPaths{root: filepath.Join(n.dir, "root"), state: filepath.Join(n.dir, "state"),
		sock: n.sock, opt: filepath.Join(n.dir, "opt"), cniConf: n.cniConf, certs: filepath.Join(n.dir, "certs.d"), shimConfig: shimConfig})
	if err := os.MkdirAll(n.cniConf, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(n.dir, "certs.d"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.cniConf, "10-uvmgcs-cri.conflist"), []byte(conflist), 0o644); err != nil {
		return err
	}
	return os.WriteFile(n.config, []byte(cfg), 0o600)
}

// inNetns is a command run inside the node's network namespace.
func (n *node) inNetns(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "/usr/bin/nsenter", append([]string{"--net=" + n.netns, "--", name}, args...)...)
}

// run runs a command in the node's namespace and returns its output.
func (n *node) run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := n.inNetns(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

// crictl runs crictl against the node; its stdout, trimmed.
func (n *node) crictl(args ...string) (string, error) {
	out, err := n.run(filepath.Join(toolsDir(), "crictl"),
		append([]string{"--runtime-endpoint", "unix://" + n.sock, "--image-endpoint", "unix://" + n.sock, "--timeout", "60s"}, args...)...)
	if err != nil {
		return out, fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out), nil
}

func (n *node) start() error {
	f, err := os.OpenFile(filepath.Join(n.dir, "containerd.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	n.log = f
	cmd := n.inNetns(context.Background(), n.v.containerd, "--config", n.config, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = f, f
	// Each containerd runs the runc shim of its own version (2.4's
	// bootstrap is not 1.6's), found beside it first on PATH.
	// Our shim is built into the node's bin/ and keeps its groups'
	// state (and its VMs' sockets) in the node's shim/.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(n.v.containerd)+":"+filepath.Join(n.dir, "bin")+":"+os.Getenv("PATH"),
		"UVMGCS_SHIM_STATE="+filepath.Join(n.dir, "shim"))
	if err := cmd.Start(); err != nil {
		return err
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(n.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := n.crictl("info"); err == nil {
			return nil
		}
		select {
		case <-n.exited:
			return fmt.Errorf("containerd exited at start; see %s", f.Name())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("containerd's CRI did not answer within 30s; see %s", f.Name())
}

// teardown removes what the node made; errors fail the test.
func (n *node) teardown() {
	t := n.t
	if n.cmd != nil {
		select {
		case <-n.exited: // failed at start: nothing to remove
		default:
			if out, err := n.crictl("rmp", "--all", "--force"); err != nil {
				t.Errorf("remove pods: %v: %s", err, out)
			}
		}
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.exited:
		case <-time.After(15 * time.Second):
			n.cmd.Process.Kill()
			<-n.exited
		}
		n.log.Close()
	}
	// Shims of this node name its socket on their command line.
	for _, pid := range pidsWithArg(n.sock) {
		t.Errorf("shim %d of this node outlived containerd; killing it", pid)
		unix.Kill(pid, unix.SIGKILL)
	}
	// The VMs of this node name its shim state directory.
	for _, pid := range pidsWithArg(filepath.Join(n.dir, "shim") + "/") {
		t.Errorf("VM process %d of this node outlived its shim; killing it", pid)
		unix.Kill(pid, unix.SIGKILL)
	}
	for _, m := range mountsUnder(n.dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", m, err)
		}
	}
	removeCgroups(t, n.cgroupParent)
	if n.ownsCRICgroup {
		removeCgroups(t, criCgroup)
	}
	if t.Failed() {
		if b, err := os.ReadFile(filepath.Join(n.dir, "containerd.log")); err == nil {
			if len(b) > 16<<10 {
				b = b[len(b)-16<<10:]
			}
			t.Logf("containerd.log (tail):\n%s", b)
		}
	}
}

// pidsWithArg are the processes one of whose arguments contains s.
func pidsWithArg(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder are the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			ms = append([]string{fields[4]}, ms...)
		}
	}
	return ms
}

// criCgroup is where containerd's CRI puts the cgroups of pods whose
// config names no parent, as critest's do: /k8s.io/<id>, in every
// hierarchy. Their runtimes remove each pod's cgroup, not this one.
const criCgroup = "/k8s.io"

// cgroupExists reports whether the cgroup is in any mounted hierarchy.
func cgroupExists(cg string) bool {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, r := range append(roots, "/sys/fs/cgroup") {
		if fi, err := os.Stat(filepath.Join(r, cg)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// removeCgroups removes the pods' cgroup parent in every hierarchy; a pod
// cgroup still there fails the test.
func removeCgroups(t testing.TB, parent string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, r := range roots {
		p := filepath.Join(r, parent)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		// Leaves first: the pods' own cgroups should be gone already.
		var dirs []string
		filepath.WalkDir(p, func(q string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append([]string{q}, dirs...)
			}
			return nil
		})
		for _, d := range dirs {
			if d != p {
				t.Errorf("cgroup %s left behind", d)
			}
			if err := unix.Rmdir(d); err != nil && err != unix.ENOENT {
				t.Errorf("remove cgroup %s: %v", d, err)
			}
		}
	}
}
