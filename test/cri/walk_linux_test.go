package cri

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host/podnet/cnitest"
)

// podConfig is a crictl pod sandbox config: a port mapping from the
// node's 8080 to the pod's 80, logs and cgroups in the node's places.
func (n *node) podConfig(t *testing.T, name string) string {
	t.Helper()
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-" + n.id, "attempt": 0},
		"hostname":      name,
		"log_directory": filepath.Join(n.dir, "logs", name),
		"port_mappings": []map[string]any{{"protocol": 0, "container_port": 80, "host_port": 8080}},
		"dns_config":    map[string]any{"servers": []string{"10.88.0.53"}, "searches": []string{"uvmgcs.test"}},
		"linux":         map[string]any{"cgroup_parent": n.cgroupParent},
	}
	return writeJSON(t, filepath.Join(n.dir, name+"-pod.json"), cfg)
}

// containerConfig runs args in the busybox image, its log in the pod's
// log directory.
func (n *node) containerConfig(t *testing.T, name string, args ...string) string {
	t.Helper()
	cfg := map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": busyboxImage},
		"command":  args,
		"log_path": name + ".log",
	}
	return writeJSON(t, filepath.Join(n.dir, name+"-ctr.json"), cfg)
}

func writeJSON(t *testing.T, path string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// walk is the crictl walk-through on one runtime handler: runp, create,
// start, exec, logs, stats, the pod's IP and a host port answered from
// the node's namespace, stopp, rmp.
func walk(t *testing.T, v version, handler string) {
	walkPod(t, newNode(t, v), handler)
}

// walkPod is the walk on node n; the pod is gone at its end.
func walkPod(t *testing.T, n *node, handler string) {
	pod := n.podConfig(t, "walk")
	ok := func(args ...string) string {
		t.Helper()
		out, err := n.crictl(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	podID := ok("runp", "--runtime", handler, pod)
	var inspect struct {
		Status struct {
			State          string `json:"state"`
			RuntimeHandler string `json:"runtimeHandler"` // containerd 2.x
			Network        struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
		Info struct {
			RuntimeHandler string `json:"runtimeHandler"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(ok("inspectp", "-o", "json", podID)), &inspect); err != nil {
		t.Fatal(err)
	}
	got := inspect.Info.RuntimeHandler // containerd 1.6
	if got == "" {
		got = inspect.Status.RuntimeHandler
	}
	if inspect.Status.State != "SANDBOX_READY" || got != handler {
		t.Fatalf("pod: state %q handler %q, want SANDBOX_READY %q", inspect.Status.State, got, handler)
	}
	ip := net.ParseIP(inspect.Status.Network.IP)
	if ip == nil || !strings.HasPrefix(ip.String(), "10.88.0.") {
		t.Fatalf("pod IP %q is not from the CNI network 10.88.0.0/24", inspect.Status.Network.IP)
	}

	if s, err := n.bundle(podID); err != nil {
		t.Fatal(err)
	} else if err := checkSandboxSpec(s, podID, "walk"); err != nil {
		t.Error(err)
	}

	web := n.containerConfig(t, "web", "sh", "-c",
		`echo "hello from $(hostname)"; mkdir -p /www && echo pod-page >/www/index.html && exec httpd -f -p 80 -h /www`)
	cid := ok("create", podID, web, pod)
	ok("start", cid)
	if s, err := n.bundle(cid); err != nil {
		t.Fatal(err)
	} else if err := checkWorkloadSpec(s, podID); err != nil {
		t.Error(err)
	}
	if got := ok("exec", "-s", cid, "cat", "/etc/uvmgcs-image"); got != busyboxImage {
		t.Errorf("exec cat /etc/uvmgcs-image = %q, want %q", got, busyboxImage)
	}
	if got := ok("exec", "-s", cid, "hostname"); got != "walk" {
		t.Errorf("hostname in the pod = %q, want walk", got)
	}
	if got := ok("exec", "-s", cid, "cat", "/etc/resolv.conf"); !strings.Contains(got, "nameserver 10.88.0.53") || !strings.Contains(got, "search uvmgcs.test") {
		t.Errorf("resolv.conf in the pod lacks the pod's DNS config:\n%s", got)
	}
	if out, err := n.crictl("exec", "-s", cid, "sh", "-c", "exit 3"); err == nil {
		t.Errorf("exec of exit 3 succeeded: %s", out)
	}
	waitFor(t, "the container's log", func() (bool, string) {
		out, err := n.crictl("logs", cid)
		return err == nil && strings.Contains(out, "hello from walk"), out
	})
	var stats struct {
		Stats []struct {
			Attributes struct {
				ID string `json:"id"`
			} `json:"attributes"`
			Memory struct {
				WorkingSetBytes struct {
					Value string `json:"value"`
				} `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(ok("stats", "-o", "json", "--id", cid)), &stats); err != nil {
		t.Fatal(err)
	}
	if len(stats.Stats) != 1 || stats.Stats[0].Attributes.ID != cid || stats.Stats[0].Memory.WorkingSetBytes.Value == "" {
		t.Errorf("stats: %+v", stats)
	}
	// The pod's IP, and the node's port 8080 (portmap), from the node.
	for _, addr := range []string{net.JoinHostPort(ip.String(), "80"), "10.88.0.1:8080"} {
		waitFor(t, "GET http://"+addr, func() (bool, string) {
			body, err := httpGet(t, n.netns, addr)
			return err == nil && strings.Contains(body, "pod-page"), fmt.Sprint(body, err)
		})
	}

	ok("stopp", podID)
	if got := ok("ps", "-a", "-q", "--state", "running"); got != "" {
		t.Errorf("containers still running after stopp: %s", got)
	}
	ok("rmp", podID)
	if got := ok("pods", "-q"); got != "" {
		t.Errorf("pods left after rmp: %s", got)
	}
	if got := ok("ps", "-a", "-q"); got != "" {
		t.Errorf("containers left after rmp: %s", got)
	}
}

// httpGet fetches / from addr inside the namespace at nsPath.
func httpGet(t *testing.T, nsPath, addr string) (string, error) {
	return httpGetPath(t, nsPath, addr, "/")
}

// httpGetPath fetches path from addr inside the namespace at nsPath: the
// whole response, status line first.
func httpGetPath(t *testing.T, nsPath, addr, path string) (string, error) {
	c, err := cnitest.Dial(t, nsPath, "tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// waitFor polls cond for up to 30 s and fails the test with its last
// detail.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var detail string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var done bool
		if done, detail = cond(); done {
			return
		}
	}
	t.Fatalf("%s: not within 30s; last: %s", what, detail)
}

// TestCRIWalkRunc is the crictl walk on the runc handler, on containerd
// 1.6 and 2.4.2: the baseline the uvmgcs handler is held to.
func TestCRIWalkRunc(t *testing.T) {
	for _, v := range []version{containerd16(), containerd2()} {
		t.Run("containerd-"+v.name, func(t *testing.T) { walk(t, v, HandlerRunc) })
	}
}
