package containerd

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
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

// BenchmarkLayerCache is the three-layer image's run with an empty layer
// cache (each layer converted to erofs) and again with the disks cached.
func BenchmarkLayerCache(b *testing.B) {
	d := benchDaemon(b)
	var cold, warm time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		disks, _ := filepath.Glob(filepath.Join(d.layers, "*"))
		for _, f := range disks {
			os.Remove(f)
		}
		cold += timedRun(b, d, d.runArgs("--rm", layeredImage, "bench-cold", "true")...)
		warm += timedRun(b, d, d.runArgs("--rm", layeredImage, "bench-warm", "true")...)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(cold.Milliseconds())/n, "cold-ms/run")
	b.ReportMetric(float64(warm.Milliseconds())/n, "cached-ms/run")
	b.ReportMetric(float64((cold-warm).Milliseconds())/n, "saved-ms/run")
	d.checkClean(b)
}
