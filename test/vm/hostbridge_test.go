package vm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

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
	hb := hostBridge(t)
	name := fmt.Sprintf("test%d", os.Getpid())
	hbRun := func(args ...string) (string, error) {
		b, err := exec.Command(hb, args...).CombinedOutput()
		return string(b), err
	}
	t.Cleanup(func() { hbRun("uvm", "stop", "--name", name) })
	if out, err := hbRun("uvm", "start", "--name", name, "-q"); err != nil {
		t.Fatalf("uvm start: %v\n%s", err, out)
	}
	if out, err := hbRun("uvm", "list"); err != nil || !strings.Contains(out, name) {
		t.Fatalf("uvm list: %v\n%s", err, out)
	}
	for i := 0; i < 2; i++ {
		if out, err := hbRun("exec", "--uvm", name, "--", "cat", "/proc/1/comm"); err != nil || out != "init\n" {
			t.Fatalf("exec %d in the uvm: %v %q", i, err, out)
		}
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
