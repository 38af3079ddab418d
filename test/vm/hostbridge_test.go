package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/layer"
)

// startNamedVM starts a long-lived VM named prefix<pid> through host-bridge,
// its data (layer and scratch disks) in a directory of the test's, and
// stops it when the test ends. hbRun runs host-bridge with that data
// directory.
func startNamedVM(t *testing.T, prefix string) (name, data string, hbRun func(args ...string) (string, error)) {
	t.Helper()
	hb := hostBridge(t)
	name = fmt.Sprintf("%s%d", prefix, os.Getpid())
	data = t.TempDir()
	hbRun = func(args ...string) (string, error) {
		cmd := exec.Command(hb, args...)
		cmd.Env = append(os.Environ(), "UVMGCS_DATA="+data)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	t.Cleanup(func() { hbRun("uvm", "stop", "--name", name) })
	if out, err := hbRun("uvm", "start", "--name", name, "-q"); err != nil {
		t.Fatalf("uvm start: %v\n%s", err, out)
	}
	return name, data, hbRun
}

func hostBridge(t *testing.T) string {
	t.Helper()
	if why := missing(); why != "" {
		t.Skip("SKIP (loud): " + why)
	}
	k, _ := bootFiles()
	hb := filepath.Join(filepath.Dir(k), "host-bridge")
	if _, err := os.Stat(hb); err != nil {
		t.Skip("SKIP (loud): " + hb + " is missing: run `make build`")
	}
	return hb
}

// TestHostBridgeRunInVM: the README's main command, end to end.
func TestHostBridgeRunInVM(t *testing.T) {
	hb := hostBridge(t)
	out, err := exec.Command(hb, "run", "-q", "--", "sh", "-c", "echo hello; exit 5").Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if string(out) != "hello\n" || code != 5 {
		t.Fatalf("host-bridge run: output %q, exit %d", out, code)
	}
}

// TestHostBridgeUVM: a long-lived VM that later verbs reach by name, and
// nothing left once it is stopped.
func TestHostBridgeUVM(t *testing.T) {
	name, data, hbRun := startNamedVM(t, "test")
	if out, err := hbRun("uvm", "list"); err != nil || !strings.Contains(out, name) {
		t.Fatalf("uvm list: %v\n%s", err, out)
	}
	for i := 0; i < 2; i++ {
		if out, err := hbRun("exec", "--uvm", name, "--", "cat", "/proc/1/comm"); err != nil || out != "init\n" {
			t.Fatalf("exec %d in the uvm: %v %q", i, err, out)
		}
	}
	// A bundle whose root is a tar on this host: create, start, kill and
	// delete, each verb its own process; delete releases the disks.
	bundle := t.TempDir()
	tree := filepath.Join(bundle, "tree")
	if err := layer.Busybox(context.Background(), "/bin/busybox", tree); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", tree, "-cf", filepath.Join(bundle, "rootfs.tar"), ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	spec, _ := json.Marshal(host.DefaultSpec("rootfs.tar", []string{"sleep", "600"}, false))
	os.WriteFile(filepath.Join(bundle, "config.json"), spec, 0o644)
	for _, args := range [][]string{
		{"create", "--uvm", name, "--bundle", bundle, "t1"},
		{"start", "--uvm", name, "-d", "t1"},
		{"kill", "--uvm", name, "t1", "KILL"},
		{"delete", "--uvm", name, "-f", "t1"},
	} {
		if out, err := hbRun(args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if out, err := hbRun("list", "--uvm", name, "-q"); err != nil || out != "" {
		t.Fatalf("containers left: %v %q", err, out)
	}
	if b, err := os.ReadFile(filepath.Join("/run/uvmgcs/uvm", name, "uvm.json")); err != nil || strings.Contains(string(b), "scsi:") {
		t.Fatalf("the VM's resource table after delete: %v\n%s", err, b)
	}
	if l, _ := filepath.Glob(filepath.Join(data, "scratch", "*")); len(l) != 0 {
		t.Fatalf("scratch files left: %q", l)
	}

	out, _ := hbRun("uvm", "list")
	pid := ""
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == name {
			pid = f[1]
		}
	}
	if out, err := hbRun("uvm", "stop", "--name", name); err != nil {
		t.Fatalf("uvm stop: %v\n%s", err, out)
	}
	if _, err := os.Stat("/proc/" + pid); err == nil && pid != "" {
		t.Fatalf("the uvm's relay (pid %s) is still running", pid)
	}
	if _, err := os.Stat(filepath.Join("/run/uvmgcs/uvm", name)); !os.IsNotExist(err) {
		t.Fatalf("the uvm's state is left: %v", err)
	}
}
