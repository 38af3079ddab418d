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
// on the host in the same run; host-cp reports the ratio (x-cp-time).
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
	// dd with 1 MiB reads: with cache=none (hcsshim's choice, coherent
	// with the host's writes) each read(2) is a 9p read of up to msize,
	// so a reader's buffer size sets the round trips; busybox cat reads
	// 4 KiB at a time and is measured apart.
	guestRead := func(cmd string, d *time.Duration) func(*testing.B) {
		return func(b *testing.B) {
			b.SetBytes(size)
			t0 := time.Now()
			for range b.N {
				r := run(b, gc, "sh", "-c", cmd)
				if r.code != 0 {
					b.Fatalf("guest read: %+v", r)
				}
			}
			if d != nil {
				*d = time.Since(t0) / time.Duration(b.N)
			}
		}
	}
	b.Run("9p-into-guest-dd-1MiB", guestRead("dd if=/run/mounts/bench-share/big of=/dev/null bs=1M 2>/dev/null", &share))
	b.Run("9p-into-guest-cat", guestRead("cat /run/mounts/bench-share/big > /dev/null", nil))
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
		if share > 0 {
			// How many times as long the read through the share takes.
			b.ReportMetric(share.Seconds()/cp.Seconds(), "x-cp-time")
		}
	})
}
