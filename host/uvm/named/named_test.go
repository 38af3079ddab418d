//go:build linux

package named

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/uvmgcs/gcs/host/uvm"
)

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"dev": true, "a-b_c.1": true, "": false, ".hidden": false, "a/b": false,
		"x y": false, "0123456789012345678901234567890123": false,
	} {
		if ValidName(name) != ok {
			t.Errorf("ValidName(%q) = %v", name, !ok)
		}
	}
}

// TestStoreWithoutARelay: a VM whose relay is not running is listed as
// stopped, cannot be attached (NotFound), and Stop removes its directory.
func TestStoreWithoutARelay(t *testing.T) {
	s := Store{Root: t.TempDir()}
	if err := os.MkdirAll(s.Dir("gone"), 0o700); err != nil {
		t.Fatal(err)
	}
	// A pid that no process has.
	os.WriteFile(filepath.Join(s.Dir("gone"), "pid"), []byte(strconv.Itoa(1<<22+1)), 0o644)
	l, err := s.List()
	if err != nil || len(l) != 1 || l[0].Name != "gone" || l[0].Pid != 0 {
		t.Fatalf("List = %+v, %v", l, err)
	}
	if _, err := s.Attach(context.Background(), "gone", uvm.Options{}); !errdefs.IsNotFound(err) {
		t.Fatalf("Attach = %v, want NotFound", err)
	}
	if _, err := s.Attach(context.Background(), "../x", uvm.Options{}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Attach of a bad name = %v", err)
	}
	if err := s.Stop("gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir("gone")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory left: %v", err)
	}
}
