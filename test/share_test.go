package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/hostmode"
	"github.com/uvmgcs/gcs/host/plan9/plan9test"
	"github.com/uvmgcs/gcs/protocol"
)

// kernel9p says whether this kernel mounts 9p over a file descriptor,
// loading its modules if it can.
func kernel9p() bool {
	exec.Command("modprobe", "-q", "9pnet_fd").Run()
	exec.Command("modprobe", "-q", "9p").Run()
	b, _ := os.ReadFile("/proc/filesystems")
	return strings.Contains(string(b), "\t9p\n")
}

// TestShareOverPortRefusals: what the agent refuses or cannot mount leaves
// no mount, no mount point and no server behind, and the agent serves on.
func TestShareOverPortRefusals(t *testing.T) {
	state := t.TempDir()
	a := startAgentWith(t, hostmode.Config{StateRoot: state})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	target := filepath.Join(state, "share")

	// Nobody listens on the port: the dial fails.
	err := a.gc.AddMappedDirectory(ctx, protocol.MappedDirectory{Port: 0x7fff0000, ShareName: "1", MountPath: target})
	if err == nil {
		t.Fatal("a share on a port nobody serves mounted")
	}
	for _, d := range []protocol.MappedDirectory{
		{Port: 564, ShareName: "a,trans=virtio", MountPath: target},
		{Port: 564, ShareName: "1", MountPath: "/etc/x"},
	} {
		if err := a.gc.AddMappedDirectory(ctx, d); !errors.Is(err, protocol.HrInvalidArg) {
			t.Errorf("%+v: %v, want invalid argument", d, err)
		}
	}
	if _, err := a.gc.ShareDirectory(ctx, filepath.Join(state, "missing"), target, false); err == nil {
		t.Error("a missing host directory shared")
	}
	if !kernel9p() {
		// The mount itself fails: the share is undone on both sides.
		if _, err := a.gc.ShareDirectory(ctx, t.TempDir(), target, false); err == nil {
			t.Fatal("a share mounted on a kernel without 9p")
		}
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("mount point left: %v", err)
	}
	if got := mountsUnder(a.Pid(), state); len(got) != 0 {
		t.Errorf("mounted: %v", got)
	}
	plan9test.WaitNoServerGoroutines(t)
	if _, err := a.gc.DumpStacks(ctx); err != nil {
		t.Fatalf("agent after the refusals: %v", err)
	}
}

// TestShareOverPort: the agent on this host mounts a directory the host
// library serves (9p over the unix socket of a port), read-write and
// read-only, and unmounts it on release.
func TestShareOverPort(t *testing.T) {
	if !kernel9p() {
		t.Skip("SKIP (loud): this kernel has no 9p file system (CONFIG_9P_FS, CONFIG_NET_9P_FD); test/vm's TestVMShareOverPort mounts shares in the utility VM")
	}
	state := t.TempDir()
	a := startAgentWith(t, hostmode.Config{StateRoot: state})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rw, ro := t.TempDir(), t.TempDir()
	data := plan9test.Populate(t, ro)
	rws, err := a.gc.ShareDirectory(ctx, rw, filepath.Join(state, "rw"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer rws.Release(ctx)
	ros, err := a.gc.ShareDirectory(ctx, ro, filepath.Join(state, "ro"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer ros.Release(ctx)
	// The agent's mounts are in its own mount namespace: look through
	// its root.
	in := func(p string) string { return fmt.Sprintf("/proc/%d/root%s", a.Pid(), p) }
	if err := os.WriteFile(in(filepath.Join(state, "rw", "out")), []byte("written"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "written" {
		t.Fatalf("host sees %q", b)
	}
	if err := os.WriteFile(in(filepath.Join(state, "ro", "x")), nil, 0o644); err == nil {
		t.Fatal("wrote to a read-only share")
	}
	f, err := os.Open(in(filepath.Join(state, "ro", data.BigName)))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	io.Copy(h, f)
	f.Close()
	if got := hex.EncodeToString(h.Sum(nil)); got != data.BigSHA256 {
		t.Fatalf("checksum %s, want %s", got, data.BigSHA256)
	}
	ents, err := os.ReadDir(in(filepath.Join(state, "ro", data.ManyDir)))
	if err != nil || len(ents) != plan9test.SmallFiles {
		t.Fatalf("listed %d files: %v", len(ents), err)
	}
	for _, s := range []*host.Share{rws, ros} {
		if err := s.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := mountsUnder(a.Pid(), state); len(got) != 0 {
		t.Fatalf("left mounted: %v", got)
	}
	plan9test.WaitNoServerGoroutines(t)
}
