package containerd

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/shim/layers"
)

// benchDaemon is containerd 1.6: Debian ships its runc shim, the baseline.
func benchDaemon(b *testing.B) *daemon {
	if suite.missing != "" {
		b.Skip(suite.missing)
	}
	return getDaemon(b, versions()[0])
}

func timedRun(b *testing.B, d *daemon, args ...string) time.Duration {
	b.Helper()
	t0 := time.Now()
	if _, err := d.ctrOK(context.Background(), args...); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

// BenchmarkCtrRunTrue is `ctr run --rm busybox true` through this runtime
// (a VM boots, the container runs, the VM stops) and through
// io.containerd.runc.v2 on the same containerd, alternating, in the same
// run: the price of a VM as a ratio.
func BenchmarkCtrRunTrue(b *testing.B) {
	d := benchDaemon(b)
	b.Cleanup(func() { removeNamespaceCgroups(b) })
	var ours, runc time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ours += timedRun(b, d, d.runArgs("--rm", busyboxImage, "bench-uvm", "true")...)
		runc += timedRun(b, d, "run", "--rm", "--runtime", "io.containerd.runc.v2", busyboxImage, "bench-runc", "true")
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(ours.Milliseconds())/n, "uvmgcs-ms/run")
	b.ReportMetric(float64(runc.Milliseconds())/n, "runc-ms/run")
	b.ReportMetric(float64(ours)/float64(runc), "x-runc")
	d.checkClean(b)
}

// removeNamespaceCgroups removes the cgroup ctr puts runc's containers
// under (/<namespace>/<id>, in every hierarchy): runc removes each
// container's own, not their parent.
func removeNamespaceCgroups(tb testing.TB) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + namespace) // cgroup v1 and hybrid hosts
	for _, d := range append(dirs, "/sys/fs/cgroup/"+namespace) {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			tb.Errorf("remove the namespace's cgroup %s: %v", d, err)
		}
	}
}

// BenchmarkLayerCache is what the layer cache saves a container start:
// making the erofs disks of the imported images' snapshot layers (the
// overlayfs snapshotter's directories) into an empty cache, against
// finding them there. A whole ctr run is dominated by the VM's boot, so
// its difference would drown in the boot's noise.
func BenchmarkLayerCache(b *testing.B) {
	d := benchDaemon(b)
	// The images' three layers were committed first, at import: snapshots
	// 1-3. Later ones are containers', which come and go.
	var dirs []string
	for i := 1; i <= 3; i++ {
		dirs = append(dirs, filepath.Join(d.dir, "root", "io.containerd.snapshotter.v1.overlayfs", "snapshots", strconv.Itoa(i), "fs"))
	}
	ctx := context.Background()
	var cold, cached time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := layers.NewCache(b.TempDir())
		t0 := time.Now()
		for _, dir := range dirs {
			if _, hit, err := c.Disk(ctx, dir); err != nil || hit {
				b.Fatalf("%s: hit=%v %v", dir, hit, err)
			}
		}
		t1 := time.Now()
		for _, dir := range dirs {
			if _, hit, err := c.Disk(ctx, dir); err != nil || !hit {
				b.Fatalf("%s: hit=%v %v", dir, hit, err)
			}
		}
		cold, cached = cold+t1.Sub(t0), cached+time.Since(t1)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(cold.Microseconds())/n/1000, "cold-ms/start")
	b.ReportMetric(float64(cached.Microseconds())/n/1000, "cached-ms/start")
	b.ReportMetric(float64(len(dirs)), "layers")
}
