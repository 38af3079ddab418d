package vm

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkVMShareRead reads a 64 MiB file from a host directory shared
// over a port of the agent channel (9p, trans=fd in the guest, the host
// library's server) into the guest, against a local cp of the same file
// on the host in the same run; it logs the ratio.
func BenchmarkVMShareRead(b *testing.B) {
	if why := missing(); why != "" {
		b.Skip("SKIP (loud): " + why)
	}
	const size = 64 << 20
	dir := b.TempDir()
	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	m := boot(b, "")
	defer m.close()
	gc := m.gc()
	ctx := context.Background()
	s, err := gc.ShareDirectory(ctx, dir, "/run/mounts/bench-share", true)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Release(ctx)

	var share, cp time.Duration
	b.Run("9p-into-guest", func(b *testing.B) {
		b.SetBytes(size)
		t0 := time.Now()
		for range b.N {
			r := run(b, gc, "sh", "-c", "cat /run/mounts/bench-share/big > /dev/null")
			if r.code != 0 {
				b.Fatalf("guest read: %+v", r)
			}
		}
		share = time.Since(t0) / time.Duration(b.N)
	})
	b.Run("host-cp", func(b *testing.B) {
		b.SetBytes(size)
		dst := filepath.Join(dir, "copy")
		t0 := time.Now()
		for range b.N {
			if out, err := exec.Command("cp", big, dst).CombinedOutput(); err != nil {
				b.Fatalf("cp: %v: %s", err, out)
			}
			os.Remove(dst)
		}
		cp = time.Since(t0) / time.Duration(b.N)
	})
	if share > 0 && cp > 0 {
		b.Logf("64 MiB: 9p into the guest %v (%.1f MiB/s), host cp %v (%.1f MiB/s): 9p takes %.1fx as long",
			share.Round(time.Millisecond), 64/share.Seconds(), cp.Round(time.Millisecond), 64/cp.Seconds(), share.Seconds()/cp.Seconds())
	}
}
