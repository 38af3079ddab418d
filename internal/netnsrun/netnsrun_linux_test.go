package netnsrun_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/uvmgcs/gcs/host/podnet/cnitest"
	"github.com/uvmgcs/gcs/internal/netnsrun"
)

// TestRun: fn sees the namespace's interfaces and its error comes back;
// paths that are no namespace say so and fn does not run.
func TestRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): network namespaces need root")
	}
	ns := cnitest.NewNetNS(t, "uvmgcs-nsrun")
	var inside []net.Interface
	if err := netnsrun.Run(ns, func() (err error) { inside, err = net.Interfaces(); return err }); err != nil {
		t.Fatal(err)
	}
	if len(inside) != 1 || inside[0].Name != "lo" {
		t.Errorf("interfaces in a fresh namespace: %v", inside)
	}
	want := errors.New("from fn")
	if err := netnsrun.Run(ns, func() error { return want }); err != want {
		t.Errorf("fn's error: %v", err)
	}
	plain := filepath.Join(t.TempDir(), "ns")
	os.WriteFile(plain, nil, 0o600)
	for _, p := range []string{plain, filepath.Join(t.TempDir(), "missing")} {
		if err := netnsrun.Run(p, func() error { t.Error("fn ran"); return nil }); !errors.Is(err, netnsrun.ErrNotNetNS) {
			t.Errorf("Run(%s): %v", p, err)
		}
	}
}
