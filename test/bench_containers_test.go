package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/protocol"
)

// BenchmarkContainerRunTrue times create → start → exit → delete of
// /bin/true through the whole bridge, and `runc run` and `crun run` of the
// same bundle in the same run, and reports the ratios.
func BenchmarkContainerRunTrue(b *testing.B) {
	a := startContainerAgent(b)
	ctx := context.Background()
	spec := a.spec("true")
	bundle := writeBundle(b, a, spec)

	var gcsTime time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		id := fmt.Sprintf("bench%d", i)
		c, err := a.gc.CreateContainer(ctx, id, spec)
		if err != nil {
			b.Fatal(err)
		}
		p, err := c.CreateProcess(ctx, &protocol.ProcessParameters{})
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			b.Fatal(err)
		}
		c.Wait()
		if err := c.Delete(ctx); err != nil {
			b.Fatal(err)
		}
		gcsTime += time.Since(start)
	}
	b.StopTimer()
	per := gcsTime.Seconds() / float64(b.N)
	b.ReportMetric(per*1e3, "gcs-ms/op")
	n := max(b.N, 20)
	if runc, err := exec.LookPath("runc"); err == nil {
		r := timeRunc(b, runc, bundle, n)
		b.ReportMetric(r*1e3, "runc-ms/op")
		b.ReportMetric(per/r, "ratio-vs-runc")
	} else {
		b.Log("SKIP (loud): runc is not installed; `make bench` installs it")
	}
	if crun, err := exec.LookPath("crun"); err == nil {
		r := timeCrun(b, crun, bundle, n)
		b.ReportMetric(r*1e3, "crun-ms/op")
		b.ReportMetric(per/r, "ratio-vs-crun")
	} else {
		b.Log("SKIP (loud): crun is not installed; `make bench` installs it")
	}
}

// writeBundle writes spec as a bundle runc and crun can run (same rootfs).
func writeBundle(b *testing.B, a *ctrAgent, spec *specs.Spec) string {
	dir := filepath.Join(a.state, "bench-bundle")
	os.MkdirAll(dir, 0o755)
	s := *spec
	s.Linux = &specs.Linux{}
	*s.Linux = *spec.Linux
	s.Linux.CgroupsPath = ""
	s.Version = "1.0.2" // the newest crun 1.8 accepts
	data, _ := json.Marshal(&s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}

// timeRunc returns seconds per `runc run` of bundle.
func timeRunc(b *testing.B, runc, bundle string, n int) float64 {
	root := b.TempDir()
	start := time.Now()
	for i := range n {
		cmd := exec.Command(runc, "--root", root, "run", "--bundle", bundle, fmt.Sprintf("runc-bench-%d-%d", os.Getpid(), i))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("runc run: %v: %s", err, out)
		}
	}
	return time.Since(start).Seconds() / float64(n)
}

// timeCrun returns seconds per `crun run` of bundle. crun refuses this
// machine's hybrid cgroup layout, so it runs in a private mount namespace
// with the unified hierarchy unmounted, timed inside that namespace.
func timeCrun(b *testing.B, crun, bundle string, n int) float64 {
	root := b.TempDir()
	script := fmt.Sprintf(`mountpoint -q /sys/fs/cgroup/unified && umount /sys/fs/cgroup/unified
s=$(date +%%s%%N)
i=0; while [ $i -lt %d ]; do %s --root %s run --bundle %s crun-bench-%d-$i >/dev/null || exit 1; i=$((i+1)); done
e=$(date +%%s%%N)
echo $((e-s))`, n, crun, root, bundle, os.Getpid())
	out, err := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script).CombinedOutput()
	if err != nil {
		b.Fatalf("crun run: %v: %s", err, out)
	}
	ns, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		b.Fatalf("crun timing %q: %v", out, err)
	}
	return ns / 1e9 / float64(n)
}

// BenchmarkContainerExecRoundTrip times exec of `true` in a running
// container through the bridge, start to exit code.
func BenchmarkContainerExecRoundTrip(b *testing.B) {
	a := startContainerAgent(b)
	c, _ := a.started(b, a.spec("sleep", "1000"), false)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		p, err := c.Exec(ctx, &specs.Process{Args: []string{"true"}, Cwd: "/"}, &protocol.ProcessParameters{})
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			b.Fatal(err)
		}
		p.Close()
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

// BenchmarkAgentRSSContainers reports the agent's resident memory with 0,
// 10 and 100 running containers.
func BenchmarkAgentRSSContainers(b *testing.B) {
	for _, n := range []int{0, 10, 100} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			a := startContainerAgent(b)
			for range n {
				a.started(b, a.spec("sleep", "1000"), false)
			}
			time.Sleep(500 * time.Millisecond)
			var kib float64
			for range b.N {
				kib = rssKiB(b, a.Pid())
			}
			b.ReportMetric(kib/1024, "RSS-MiB")
		})
	}
}
