package cri

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// bundleSpec is the part of a task bundle's config.json a shim for VM
// pods depends on.
type bundleSpec struct {
	Annotations map[string]string `json:"annotations"`
	Hostname    string            `json:"hostname"`
	Mounts      []struct {
		Destination string `json:"destination"`
		Type        string `json:"type"`
		Source      string `json:"source"`
	} `json:"mounts"`
	Linux struct {
		Namespaces []struct {
			Type string `json:"type"`
			Path string `json:"path"`
		} `json:"namespaces"`
	} `json:"linux"`
}

// bundle reads the config.json containerd wrote for task id: what any
// runtime v2 shim, runc's or ours, is given.
func (n *node) bundle(id string) (*bundleSpec, error) {
	b, err := os.ReadFile(filepath.Join(n.dir, "state", "io.containerd.runtime.v2.task", k8sNamespace, id, "config.json"))
	if err != nil {
		return nil, err
	}
	var s bundleSpec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *bundleSpec) namespace(typ string) (string, bool) {
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == typ {
			return ns.Path, true
		}
	}
	return "", false
}

// checkSandboxSpec checks what the shim is told about a pod sandbox: its
// CRI annotations and the CNI network namespace it must attach the VM to.
func checkSandboxSpec(s *bundleSpec, podID, name string) error {
	want := map[string]string{
		"io.kubernetes.cri.container-type": "sandbox",
		"io.kubernetes.cri.sandbox-id":     podID,
		"io.kubernetes.cri.sandbox-name":   name,
	}
	for k, v := range want {
		if s.Annotations[k] != v {
			return fmt.Errorf("sandbox annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}
	if p, _ := s.namespace("network"); !strings.HasPrefix(p, "/var/run/netns/cni-") {
		return fmt.Errorf("sandbox network namespace %q is not a CNI netns under /var/run/netns", p)
	}
	return nil
}

// checkWorkloadSpec checks what the shim is told about a pod's container:
// the group key, and namespaces, hosts files and /dev/shm that name the
// sandbox's on the host, all of which a VM shim must rewrite.
func checkWorkloadSpec(s *bundleSpec, podID string) error {
	if s.Annotations["io.kubernetes.cri.container-type"] != "container" || s.Annotations["io.kubernetes.cri.sandbox-id"] != podID {
		return fmt.Errorf("workload annotations %v lack container-type=container, sandbox-id=%s", s.Annotations, podID)
	}
	for _, typ := range []string{"network", "ipc", "uts"} {
		if p, _ := s.namespace(typ); !strings.HasPrefix(p, "/proc/") {
			return fmt.Errorf("workload %s namespace %q is not the sandbox task's /proc/<pid>/ns path", typ, p)
		}
	}
	binds := map[string]bool{}
	for _, m := range s.Mounts {
		if m.Type == "bind" {
			binds[m.Destination] = true
		}
	}
	for _, d := range []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/shm"} {
		if !binds[d] {
			return fmt.Errorf("workload has no host bind mount on %s", d)
		}
	}
	return nil
}
