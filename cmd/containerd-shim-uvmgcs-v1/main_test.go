package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
)

func TestGroupKey(t *testing.T) {
	dir := t.TempDir()
	write := func(spec string) {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if g := groupKey(dir, "t1"); g != "t1" {
		t.Errorf("no spec: group %q, want the task id", g)
	}
	write(`{"annotations":{"io.kubernetes.cri.sandbox-id":"pod"}}`)
	if g := groupKey(dir, "t1"); g != "pod" {
		t.Errorf("CRI sandbox: group %q", g)
	}
	write(`{"annotations":{"io.kubernetes.cri.sandbox-id":"pod","io.containerd.runc.v2.group":"g"}}`)
	if g := groupKey(dir, "t1"); g != "g" {
		t.Errorf("runc group label first: group %q", g)
	}
	if groupDir("a", "ns", "g") == groupDir("b", "ns", "g") || groupDir("a", "ns", "g") == groupDir("a", "ns2", "g") {
		t.Error("group directories of two containerds or namespaces collide")
	}
}

// TestActions runs the binary as containerd does: -info prints a
// RuntimeInfo, delete prints a DeleteResponse and cleans a dead group up.
func TestActions(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "containerd-shim-uvmgcs-v1")
	if b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, b)
	}
	out, err := exec.Command(bin, "-info").Output()
	if err != nil {
		t.Fatal(err)
	}
	var info apitypes.RuntimeInfo
	if err := proto.Unmarshal(out, &info); err != nil || info.Name != RuntimeName || info.Annotations["containerd.io/runtime-allow-mounts"] == "" {
		t.Fatalf("-info: %v %+v", err, &info)
	}
	var feat features.Features
	if f := info.GetFeatures(); f == nil || f.GetTypeUrl() != featuresTypeURL || json.Unmarshal(f.GetValue(), &feat) != nil ||
		!slices.Contains(feat.MountOptions, "rro") || feat.Linux == nil || feat.Linux.Seccomp == nil || !*feat.Linux.Seccomp.Enabled {
		t.Fatalf("-info features: %+v", info.GetFeatures())
	}

	state, bundle := t.TempDir(), t.TempDir()
	group := filepath.Join(state, "deadgroup")
	if err := os.MkdirAll(group, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bundle, bundleGroupFile), []byte(group), 0o600)
	os.WriteFile(filepath.Join(bundle, "scratch.img"), nil, 0o600)
	cmd := exec.Command(bin, "-namespace", "ns", "-address", "/nonexistent.sock", "-id", "t1", "-bundle", bundle, "delete")
	cmd.Env = append(os.Environ(), stateRootEnv+"="+state)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	var resp taskAPI.DeleteResponse
	if err := proto.Unmarshal(stdout.Bytes(), &resp); err != nil || resp.ExitStatus != 137 || resp.ExitedAt == nil {
		t.Fatalf("delete printed %q: %v %+v", stdout.Bytes(), err, &resp)
	}
	for _, p := range []string{group, filepath.Join(bundle, "scratch.img")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there after delete of a dead group", p)
		}
	}
}
