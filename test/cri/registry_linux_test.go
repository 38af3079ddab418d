package cri

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/internal/ociimage"
)

// registryAddr is where the offline registry listens, inside the node's
// network namespace only.
const registryAddr = "127.0.0.1:5000"

// mirrored are the registries whose pulls the node resolves from the
// offline registry (CRI registry.config_path hosts.toml mirrors).
var mirrored = []string{"registry.k8s.io", "gcr.io", "k8s.gcr.io"}

// startRegistry runs Debian's docker-registry in the node's namespace,
// storage in the node's directory, and points the mirrored registries'
// hosts.toml at it; it is stopped when the test ends.
func (n *node) startRegistry(t *testing.T) {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatal("docker-registry is missing (make cri-deps installs it)")
	}
	dir := filepath.Join(n.dir, "registry")
	cfg := filepath.Join(n.dir, "registry.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
`, dir, registryAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(n.dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := n.inNetns(t.Context(), bin, "serve", cfg)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		log.Close()
	})
	waitFor(t, "the registry", func() (bool, string) {
		body, err := httpGetPath(t, n.netns, registryAddr, "/v2/")
		return err == nil && strings.Contains(body, "200 OK"), fmt.Sprint(body, err)
	})
	for _, host := range mirrored {
		d := filepath.Join(n.dir, "certs.d", host)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		hosts := fmt.Sprintf("server = \"https://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", host, registryAddr)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(hosts), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// pushImages imports imgs into a containerd namespace of their own and
// pushes each to the offline registry under its path without the
// registry host (registry.k8s.io/pause:3.9 becomes 127.0.0.1:5000/pause:3.9).
func (n *node) pushImages(t *testing.T, imgs []ociimage.Image) {
	t.Helper()
	local := make([]ociimage.Image, len(imgs))
	for i, img := range imgs {
		local[i] = img
		local[i].Name = localName(img.Name)
	}
	archive := filepath.Join(n.dir, "push.tar")
	if err := ociimage.WriteImages(archive, local); err != nil {
		t.Fatal(err)
	}
	ctr := []string{"--address", n.sock, "--namespace", "uvmgcs-push"}
	if out, err := n.run(n.v.ctr, append(ctr, "images", "import", archive)...); err != nil {
		t.Fatalf("ctr images import: %v: %s", err, out)
	}
	seen := map[string]bool{}
	for _, img := range local {
		if seen[img.Name] {
			continue
		}
		seen[img.Name] = true
		if out, err := n.run(n.v.ctr, append(ctr, "images", "push", "--plain-http", img.Name)...); err != nil {
			t.Fatalf("ctr images push %s: %v: %s", img.Name, err, out)
		}
	}
}

// localName is name's reference in the offline registry.
func localName(name string) string {
	_, path, _ := strings.Cut(name, "/")
	return registryAddr + "/" + path
}
