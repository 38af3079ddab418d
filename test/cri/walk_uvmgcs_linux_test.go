package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCRIWalkUvmgcs is the crictl walk on the uvmgcs handler, on
// containerd 1.6 and 2.4.2: each pod is a utility VM running its pause
// container and workloads. After the walk (TestCRIWalkRunc's, with the
// pod's IP and a host port answered from the node), a second pod runs two
// containers that talk over localhost and share /dev/shm and the pod's pid
// namespace, and a third whose memory limit is exceeded, which crictl
// inspect reports as OOMKilled. After stopp and rmp nothing of a pod is
// left: no VM, shim, tap, network namespace, cgroup or mount.
func TestCRIWalkUvmgcs(t *testing.T) {
	if why := uvmgcsMissing(); why != "" {
		t.Skip("SKIP (loud): " + why)
	}
	for _, v := range []version{containerd16(), containerd2()} {
		t.Run("containerd-"+v.name, func(t *testing.T) {
			t0 := time.Now()
			n := newNode(t, v)
			t.Logf("node up: %v", time.Since(t0))
			t1 := time.Now()
			walkPod(t, n, HandlerUVMGCS)
			t.Logf("walk (runp … rmp): %v", time.Since(t1))
			n.assertNoPodLeft(t)
			t1 = time.Now()
			podOfTwo(t, n)
			t.Logf("two containers over localhost: %v", time.Since(t1))
			n.assertNoPodLeft(t)
			t1 = time.Now()
			oomPod(t, n)
			t.Logf("OOMKilled: %v", time.Since(t1))
			n.assertNoPodLeft(t)
			t.Logf("total: %v", time.Since(t0))
		})
	}
}

// okCrictl runs crictl on n and fails the test on an error.
func (n *node) okCrictl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := n.crictl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// podOfTwo: a server and a client container in one pod reach each other
// on localhost, see each other's processes (the pod's pid namespace) and
// share /dev/shm.
func podOfTwo(t *testing.T, n *node) {
	name := "two"
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-" + n.id},
		"hostname":      name,
		"log_directory": filepath.Join(n.dir, "logs", name),
		// The pod's resources size its VM: the configured 512 MiB plus
		// these 256.
		"linux": map[string]any{"cgroup_parent": n.cgroupParent, "resources": map[string]any{"memory_limit_in_bytes": 256 << 20}},
	}
	podPath := writeJSON(t, filepath.Join(n.dir, name+"-pod.json"), cfg)
	podID := n.okCrictl(t, "runp", "--runtime", HandlerUVMGCS, podPath)
	netns := n.podNetns(t, podID)
	server := n.okCrictl(t, "create", podID, n.containerConfig(t, "server", "sh", "-c",
		`mkdir -p /www && echo from-the-server >/www/index.html && echo shared >/dev/shm/mark && exec httpd -f -p 127.0.0.1:8081 -h /www`), podPath)
	n.okCrictl(t, "start", server)
	client := n.okCrictl(t, "create", podID, n.containerConfig(t, "client", "sleep", "3600"), podPath)
	n.okCrictl(t, "start", client)
	waitFor(t, "the server, from the client over localhost", func() (bool, string) {
		out, err := n.crictl("exec", "-s", client, "wget", "-q", "-O", "-", "http://127.0.0.1:8081/")
		return err == nil && strings.Contains(out, "from-the-server"), out
	})
	if got := n.okCrictl(t, "exec", "-s", client, "cat", "/dev/shm/mark"); got != "shared" {
		t.Errorf("the client's /dev/shm/mark = %q, want the server's", got)
	}
	if got := n.okCrictl(t, "exec", "-s", client, "ps", "-o", "args"); !strings.Contains(got, "httpd") {
		t.Errorf("the client does not see the server's httpd in the pod's pid namespace:\n%s", got)
	}
	if got := n.okCrictl(t, "exec", "-s", server, "hostname"); got != name {
		t.Errorf("hostname %q, want %q", got, name)
	}
	n.checkPodStats(t, podID)
	meminfo := n.okCrictl(t, "exec", "-s", client, "head", "-n1", "/proc/meminfo")
	if f := strings.Fields(meminfo); len(f) < 2 || atoi(f[1]) < 700<<10 {
		t.Errorf("the pod's VM is not sized from the pod's resources (512+256 MiB): %s", meminfo)
	}

	// attach: stdin reaches the container and its output comes back;
	// with stdin_once the container's stdin closes with the attach's.
	echo := n.okCrictl(t, "create", podID, writeJSON(t, filepath.Join(n.dir, "echo-ctr.json"), map[string]any{
		"metadata": map[string]any{"name": "echo"},
		"image":    map[string]any{"image": busyboxImage},
		"command":  []string{"cat"},
		"stdin":    true, "stdin_once": true,
		"log_path": "echo.log",
	}), podPath)
	n.okCrictl(t, "start", echo)
	if out, err := n.crictlIn("attached\n", "attach", "-i", echo); err != nil || !strings.Contains(out, "attached") {
		t.Errorf("attach: %q %v", out, err)
	}
	n.waitExited(t, echo, 0, "Completed")
	if got := n.okCrictl(t, "logs", echo); got != "attached" {
		t.Errorf("logs of the attached container: %q", got)
	}

	// Removed in another order: a container stopped and removed first,
	// then the pod removed without a stopp.
	n.okCrictl(t, "stop", client)
	n.okCrictl(t, "rm", client)
	n.okCrictl(t, "rmp", "--force", podID)
	assertGone(t, netns)
}

// crictlIn runs crictl on n with stdin; its output, trimmed.
func (n *node) crictlIn(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := n.inNetns(ctx, filepath.Join(toolsDir(), "crictl"), append([]string{"--runtime-endpoint", "unix://" + n.sock, "--timeout", "60s"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// waitExited waits for container id to exit and checks its exit code and
// reason as crictl inspect gives them.
func (n *node) waitExited(t *testing.T, id string, code int, reason string) {
	t.Helper()
	var st struct {
		Status struct {
			State    string `json:"state"`
			ExitCode int    `json:"exitCode"`
			Reason   string `json:"reason"`
		} `json:"status"`
	}
	waitFor(t, "container "+id+" to exit", func() (bool, string) {
		out, err := n.crictl("inspect", "-o", "json", id)
		if err != nil {
			return false, out
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return false, err.Error()
		}
		return st.Status.State == "CONTAINER_EXITED" && st.Status.Reason != "", out
	})
	if st.Status.ExitCode != code || st.Status.Reason != reason {
		t.Errorf("container %s exited with %d (%s), want %d (%s)", id, st.Status.ExitCode, st.Status.Reason, code, reason)
	}
}

// oomPod: a container over its memory limit is OOMKilled, as crictl
// inspect says, with exit code 137.
func oomPod(t *testing.T, n *node) {
	name := "oom"
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-" + n.id},
		"log_directory": filepath.Join(n.dir, "logs", name),
		"linux":         map[string]any{"cgroup_parent": n.cgroupParent},
	}
	podPath := writeJSON(t, filepath.Join(n.dir, name+"-pod.json"), cfg)
	podID := n.okCrictl(t, "runp", "--runtime", HandlerUVMGCS, podPath)
	netns := n.podNetns(t, podID)
	ctr := map[string]any{
		"metadata": map[string]any{"name": "hog"},
		"image":    map[string]any{"image": busyboxImage},
		// tail keeps the line it reads: /dev/zero has no end of line.
		"command":  []string{"tail", "/dev/zero"},
		"log_path": "hog.log",
		"linux":    map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 32 << 20}},
	}
	cid := n.okCrictl(t, "create", podID, writeJSON(t, filepath.Join(n.dir, "hog-ctr.json"), ctr), podPath)
	n.okCrictl(t, "start", cid)
	n.waitExited(t, cid, 137, "OOMKilled")
	// A plain non-zero exit is an Error, with its code.
	seven := n.okCrictl(t, "create", podID, n.containerConfig(t, "seven", "sh", "-c", "exit 7"), podPath)
	n.okCrictl(t, "start", seven)
	n.waitExited(t, seven, 7, "Error")
	n.okCrictl(t, "stopp", podID)
	n.okCrictl(t, "rmp", podID)
	assertGone(t, netns)
}

// checkPodStats: crictl statsp gives the pod's memory working set (the
// VM's, in the pod's cgroup on the node) and its containers' stats.
func (n *node) checkPodStats(t *testing.T, podID string) {
	t.Helper()
	var stats struct {
		Stats []struct {
			Attributes struct {
				ID string `json:"id"`
			} `json:"attributes"`
			Linux struct {
				Memory struct {
					WorkingSetBytes struct {
						Value string `json:"value"`
					} `json:"workingSetBytes"`
				} `json:"memory"`
				Containers []struct {
					Attributes struct {
						ID string `json:"id"`
					} `json:"attributes"`
				} `json:"containers"`
			} `json:"linux"`
		} `json:"stats"`
	}
	out := n.okCrictl(t, "statsp", "-o", "json", "--id", podID)
	if err := json.Unmarshal([]byte(out), &stats); err != nil {
		t.Fatalf("statsp: %v: %s", err, out)
	}
	if len(stats.Stats) != 1 || stats.Stats[0].Attributes.ID != podID {
		t.Fatalf("statsp: %s", out)
	}
	l := stats.Stats[0].Linux
	if ws, _ := strconv.ParseUint(l.Memory.WorkingSetBytes.Value, 10, 64); ws < 16<<20 {
		t.Errorf("the pod's memory working set %q is not a VM's:\n%s", l.Memory.WorkingSetBytes.Value, out)
	}
	if len(l.Containers) != 2 {
		t.Errorf("statsp lists %d containers, want 2:\n%s", len(l.Containers), out)
	}
}

// podNetns is the CNI network namespace containerd made for pod id.
func (n *node) podNetns(t *testing.T, id string) string {
	t.Helper()
	s, err := n.bundle(id)
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := s.namespace("network")
	if ns == "" {
		t.Fatalf("pod %s has no network namespace", id)
	}
	return ns
}

// assertGone checks that a pod's network namespace (and the tap in it)
// went with the pod.
func assertGone(t *testing.T, netns string) {
	t.Helper()
	if _, err := os.Stat(netns); err == nil {
		t.Errorf("the pod's network namespace %s is left", netns)
	}
}

// assertNoPodLeft checks that no pod of n holds anything: no shim, no
// VM, no cgroup under the pods' parent, no mount under the node's task
// state.
func (n *node) assertNoPodLeft(t *testing.T) {
	t.Helper()
	// A shim exits shortly after its last task is deleted.
	waitFor(t, "the pods' shims and VMs to exit", func() (bool, string) {
		shims, vms := pidsWithArg(n.sock), pidsWithArg(filepath.Join(n.dir, "shim")+"/")
		return len(shims) == 0 && len(vms) == 0, fmt.Sprintf("shims %v, VMs %v", shims, vms)
	})
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, r := range roots {
		ents, _ := os.ReadDir(filepath.Join(r, n.cgroupParent))
		for _, e := range ents {
			if e.IsDir() {
				t.Errorf("cgroup %s left", filepath.Join(r, n.cgroupParent, e.Name()))
			}
		}
	}
	for _, m := range mountsUnder(filepath.Join(n.dir, "state")) {
		t.Errorf("mount %s left", m)
	}
	ents, _ := os.ReadDir(filepath.Join(n.dir, "shim"))
	for _, e := range ents {
		t.Errorf("shim group directory %s left", e.Name())
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
