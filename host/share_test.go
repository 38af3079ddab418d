//go:build linux && !race

// Not under -race: github.com/hugelgupf/p9 v0.3.0's connection handler
// may start a request goroutine that calls WaitGroup.Add while the
// closing connection Waits (server.go Handle/stop), which the race
// detector reports. It is benign (the late goroutine sees the closed
// connection and returns) and not ours to fix short of a fork.

package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hugelgupf/p9/p9"

	"github.com/uvmgcs/gcs/host/plan9/plan9test"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// p9Guest serves MappedDirectory the way the agent does up to the mount:
// it dials the request's port and attaches to ShareName, with the 9p
// library's client standing in for the guest kernel's.
type p9Guest struct {
	dialer transport.Dialer

	mu        sync.Mutex
	mounts    map[string]*p9.Client
	roots     map[string]p9.File
	reqs      []protocol.MappedDirectory
	refuseAdd bool
	refuseRem bool
}

func (g *p9Guest) Modify(ctx context.Context, req protocol.ModificationRequest) error {
	var d protocol.MappedDirectory
	if err := json.Unmarshal(req.Settings, &d); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reqs = append(g.reqs, d)
	switch req.RequestType {
	case protocol.RequestTypeAdd:
		if g.refuseAdd {
			return fmt.Errorf("no: %w", protocol.HrInvalidArg)
		}
		c, err := g.dialer.Dial(ctx, d.Port)
		if err != nil {
			return err
		}
		cl, err := p9.NewClient(c)
		if err != nil {
			c.Close()
			return err
		}
		root, err := cl.Attach(d.ShareName)
		if err != nil {
			cl.Close()
			return fmt.Errorf("attach %q: %w", d.ShareName, err)
		}
		g.mounts[d.MountPath], g.roots[d.MountPath] = cl, root
	case protocol.RequestTypeRemove:
		if g.refuseRem {
			return fmt.Errorf("busy: %w", protocol.HrVmcomputeInvalidState)
		}
		if cl := g.mounts[d.MountPath]; cl != nil {
			cl.Close()
		}
		delete(g.mounts, d.MountPath)
		delete(g.roots, d.MountPath)
	}
	return nil
}

func (g *p9Guest) root(path string) p9.File {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.roots[path]
}

func TestShareDirectory(t *testing.T) {
	g := &p9Guest{mounts: map[string]*p9.Client{}, roots: map[string]p9.File{}}
	gc := startResourceGuest(t, g)
	g.dialer = gc.cfg.IO.(transport.Unix)
	ctx := context.Background()
	rw, ro := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(ro, "hello"), []byte("hi"), 0o644)

	rws, err := gc.ShareDirectory(ctx, rw, "/run/mounts/rw", false)
	if err != nil {
		t.Fatal(err)
	}
	ros, err := gc.ShareDirectory(ctx, ro, "/run/mounts/ro", true)
	if err != nil {
		t.Fatal(err)
	}
	if rws.Request().Port == ros.Request().Port || rws.GuestPath() != "/run/mounts/rw" || !ros.Request().ReadOnly {
		t.Fatalf("requests: %+v %+v", rws.Request(), ros.Request())
	}
	_, dir, err := g.root("/run/mounts/rw").Walk(nil)
	if err != nil {
		t.Fatal(err)
	}
	f, _, _, err := dir.Create("out", p9.WriteOnly, 0o644, p9.NoUID, p9.NoGID)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("written"), 0)
	f.Close()
	if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "written" {
		t.Fatalf("host sees %q", b)
	}
	_, rodir, _ := g.root("/run/mounts/ro").Walk(nil)
	if _, _, _, err := rodir.Create("x", p9.WriteOnly, 0o644, p9.NoUID, p9.NoGID); err == nil {
		t.Fatal("created a file in a read-only share")
	}

	// A guest that refuses the unmount keeps the share served, and the
	// release can be retried.
	g.refuseRem = true
	if err := rws.Release(ctx); !errors.Is(err, protocol.HrVmcomputeInvalidState) {
		t.Fatalf("release refused by the guest: %v", err)
	}
	if _, _, err := g.root("/run/mounts/rw").Walk([]string{"out"}); err != nil {
		t.Fatalf("share after a refused release: %v", err)
	}
	g.refuseRem = false
	for _, s := range []*Share{rws, ros, rws} {
		if err := s.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	plan9test.WaitNoServerGoroutines(t)
	if _, err := os.Stat(transport.Unix{Dir: g.dialer.(transport.Unix).Dir}.Path(rws.Request().Port)); !os.IsNotExist(err) {
		t.Fatalf("the share's socket is left: %v", err)
	}

	if _, err := gc.ShareDirectory(ctx, filepath.Join(rw, "out"), "/run/mounts/f", false); err == nil {
		t.Fatal("a file shared as a directory")
	}
	// A guest that refuses the mount leaves no server behind.
	g.refuseAdd = true
	if _, err := gc.ShareDirectory(ctx, rw, "/run/mounts/x", false); !errors.Is(err, protocol.HrInvalidArg) {
		t.Fatalf("a share the guest refused: %v", err)
	}
	plan9test.WaitNoServerGoroutines(t)
}
