package cri

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// uvmgcsMissing says why the uvmgcs handler cannot run pods here, or "".
func uvmgcsMissing() string {
	out := filepath.Join(repoRoot(), "out")
	for _, f := range []string{filepath.Join(out, "vmlinux"), filepath.Join(out, "initrd.img")} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Sprintf("%s is missing (make all builds the UVM's kernel and initrd)", f)
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "qemu-system-x86_64 is missing (make deps installs it)"
	}
	return ""
}

// writeShimConfig builds containerd-shim-uvmgcs-v1 into the node's bin/
// and writes the uvmgcs handler's configuration: the UVM's kernel and
// initrd from out/, layer disks and the VMs' consoles in the node's
// directory. It returns the configuration's path.
func (n *node) writeShimConfig() (string, error) {
	bin := filepath.Join(n.dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "containerd-shim-uvmgcs-v1"), "./cmd/containerd-shim-uvmgcs-v1")
	build.Dir = repoRoot()
	if b, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the shim: %v: %s", err, b)
	}
	out := filepath.Join(repoRoot(), "out")
	path := filepath.Join(n.dir, "shim.toml")
	cfg := fmt.Sprintf("kernel = %q\ninitrd = %q\nlayer_cache = %q\nscratch_mib = 256\nconsole_log = %q\n",
		filepath.Join(out, "vmlinux"), filepath.Join(out, "initrd.img"), filepath.Join(n.dir, "layers"), filepath.Join(n.dir, "console.log"))
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}
