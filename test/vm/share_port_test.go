package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/plan9/plan9test"
)

// mountedUnder lists the guest's mount points under prefix.
func mountedUnder(t *testing.T, gc *host.GuestConnection, prefix string) []string {
	t.Helper()
	r := run(t, gc, "cat", "/proc/self/mountinfo")
	var found []string
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], prefix) {
			found = append(found, f[4])
		}
	}
	return found
}

// TestVMShareOverPort: host directories served by the host library's 9p
// server over ports of the agent channel, mounted by the guest with
// trans=fd (hcsshim's Plan9 shares): reads, writes, read-only refused by
// the guest's mount and by the host's server, a 64 MiB file and 10,000
// small files intact, reference counts, and nothing left after release.
func TestVMShareOverPort(t *testing.T) {
	m := shared.get(t)
	gc := m.gc()
	rw, ro := t.TempDir(), t.TempDir()
	data := plan9test.Populate(t, ro)
	os.WriteFile(filepath.Join(ro, "hello"), []byte("from the host\n"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	rws, err := gc.ShareDirectory(ctx, rw, "/run/mounts/p9/rw", false)
	if err != nil {
		t.Fatalf("share rw: %v\n%s", err, m.console)
	}
	defer rws.Release(ctx)
	ros, err := gc.ShareDirectory(ctx, ro, "/run/mounts/p9/ro", true)
	if err != nil {
		t.Fatalf("share ro: %v\n%s", err, m.console)
	}
	defer ros.Release(ctx)

	r := run(t, gc, "sh", "-c", `cd /run/mounts/p9 && cat ro/hello &&
		echo x > ro/new || echo ro-refused &&
		echo written > rw/out && mkdir rw/d && echo moved > rw/d/a && mv rw/d/a rw/d/b && rm rw/out2 2>/dev/null;
		echo gone > rw/tmp && rm rw/tmp && ls rw/d`)
	if r.stdout != "from the host\nro-refused\nb\n" || !strings.Contains(r.stderr, "Read-only file system") {
		t.Fatalf("guest: %+v", r)
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "written\n" {
		t.Fatalf("host sees %q", b)
	}
	if _, err := os.Stat(filepath.Join(rw, "tmp")); !os.IsNotExist(err) {
		t.Fatalf("a file the guest removed: %v", err)
	}

	t.Log("read, write, read-only mount: ok")
	// The host refuses writes to a read-only export even to a guest that
	// mounts it read-write.
	sneaky := ros.Request()
	sneaky.ReadOnly, sneaky.MountPath = false, "/run/mounts/p9/sneaky"
	if err := gc.AddMappedDirectory(ctx, sneaky); err != nil {
		t.Fatalf("mount the read-only export read-write: %v", err)
	}
	r = run(t, gc, "sh", "-c", "echo x > /run/mounts/p9/sneaky/new; mkdir /run/mounts/p9/sneaky/d; cat /run/mounts/p9/sneaky/hello")
	if r.stdout != "from the host\n" || strings.Count(r.stderr, "Read-only file system") != 2 {
		t.Fatalf("writes to a read-only export: %+v", r)
	}
	if err := gc.RemoveMappedDirectory(ctx, sneaky); err != nil {
		t.Fatal(err)
	}

	t.Log("read-only export: ok")
	// The big file intact; all 10,000 small files listed (a glob reads
	// the directory only) and a sample of them read.
	r = run(t, gc, "sh", "-c", "cd /run/mounts/p9/ro && sha256sum "+data.BigName+" && set -- "+data.ManyDir+"/* && echo $# && cat "+data.ManyDir+"/123*")
	want := fmt.Sprintf("%s  %s\n%d\n", data.BigSHA256, data.BigName, plan9test.SmallFiles)
	for _, n := range []string{"123", "1230", "1231", "1232", "1233", "1234", "1235", "1236", "1237", "1238", "1239"} {
		want += n + "\n"
	}
	if r.stdout != want {
		t.Fatalf("guest read: %+v, want %q", r, want)
	}
	t.Log("64 MiB and 10,000 files read: ok")

	// Small files the guest writes arrive on the host. (Each costs a few
	// round trips over the emulated serial channel: 1,000 here; the 9p
	// server's own tests list and read 10,000.)
	const written = 1000
	r = run(t, gc, "sh", "-c", fmt.Sprintf(`mkdir /run/mounts/p9/rw/many && cd /run/mounts/p9/rw/many && i=0; while [ $i -lt %d ]; do echo $i > $i; i=$((i+1)); done`, written))
	if r.code != 0 {
		t.Fatalf("guest writes: %+v", r)
	}
	ents, err := os.ReadDir(filepath.Join(rw, "many"))
	if err != nil || len(ents) != written {
		t.Fatalf("host sees %d files (%v)", len(ents), err)
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "many", "999")); string(b) != "999\n" {
		t.Fatalf("file 999 holds %q", b)
	}
	t.Log("files written: ok")

	// A second Add of the same share takes a reference: one Remove leaves
	// it mounted, Release unmounts it.
	if err := gc.AddMappedDirectory(ctx, rws.Request()); err != nil {
		t.Fatal(err)
	}
	if err := gc.RemoveMappedDirectory(ctx, rws.Request()); err != nil {
		t.Fatal(err)
	}
	if got := mountedUnder(t, gc, "/run/mounts/p9"); len(got) != 2 {
		t.Fatalf("mounted after dropping one of two references: %v", got)
	}
	for _, s := range []*host.Share{rws, ros} {
		if err := s.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := mountedUnder(t, gc, "/run/mounts/p9"); len(got) != 0 {
		t.Fatalf("left mounted: %v", got)
	}
	if r := run(t, gc, "ls", "-A", "/run/mounts/p9"); r.stdout != "" {
		t.Fatalf("mount points left: %+v", r)
	}
	plan9test.WaitNoServerGoroutines(t)
}

// TestHostBridgeRunVolumes: host-bridge run -v binds shared host
// directories into the container, read-only with :ro.
func TestHostBridgeRunVolumes(t *testing.T) {
	hb := hostBridge(t)
	rw, ro := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(rw, "in"), []byte("from the host\n"), 0o644)
	cmd := exec.Command(hb, "run", "-q", "-v", rw+":/data", "-v", ro+":/config:ro", "--",
		"sh", "-c", "cat /data/in; echo out > /data/out; echo x > /config/x || echo ro-refused")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("host-bridge run: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "from the host\n") || !strings.Contains(string(out), "ro-refused\n") {
		t.Fatalf("container said %q", out)
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "out\n" {
		t.Fatalf("host sees %q", b)
	}
	if ents, _ := os.ReadDir(ro); len(ents) != 0 {
		t.Fatalf("written through a read-only volume: %v", ents)
	}
	if out, err := exec.Command(hb, "run", "-q", "-v", rw+":relative", "--", "true").CombinedOutput(); err == nil {
		t.Fatalf("a relative container path accepted: %s", out)
	}
}
