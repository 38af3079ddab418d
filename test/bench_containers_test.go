package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/protocol"
)

// BenchmarkContainerRunTrue times create → start → exit → delete of
// /bin/true through the whole bridge, and `runc run` and `crun run` of the
// same bundle in the same run, and reports the medians (at least 20 runs
// each) and their ratios.
func BenchmarkContainerRunTrue(b *testing.B) {
	a := startContainerAgent(b)
	ctx := context.Background()
	spec := a.spec("true")
	bundle := writeBundle(b, a, spec)

	lat := make([]time.Duration, 0, b.N)
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
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	gcs := median(lat)
	b.ReportMetric(ms(gcs), "gcs-p50-ms")
	n := max(b.N, 20)
	if runc, err := exec.LookPath("runc"); err == nil {
		r := median(timeRunc(b, runc, bundle, n))
		b.ReportMetric(ms(r), "runc-p50-ms")
		b.ReportMetric(float64(gcs)/float64(r), "ratio-vs-runc")
	} else {
		b.Log("SKIP (loud): runc is not installed; `make bench` installs it")
	}
	if crun, err := exec.LookPath("crun"); err == nil {
		r := median(timeCrun(b, crun, bundle, n))
		b.ReportMetric(ms(r), "crun-p50-ms")
		b.ReportMetric(float64(gcs)/float64(r), "ratio-vs-crun")
	} else {
		b.Log("SKIP (loud): crun is not installed; `make bench` installs it")
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

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

// timeRunc times n `runc run`s of bundle, one by one.
func timeRunc(b *testing.B, runc, bundle string, n int) []time.Duration {
	root := b.TempDir()
	var lat []time.Duration
	for i := range n {
		cmd := exec.Command(runc, "--root", root, "run", "--bundle", bundle, fmt.Sprintf("runc-bench-%d-%d", os.Getpid(), i))
		start := time.Now()
		out, err := cmd.CombinedOutput()
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatalf("runc run: %v: %s", err, out)
		}
	}
	return lat
}

// timeCrun times n `crun run`s of bundle, one by one. crun refuses this
// machine's hybrid cgroup layout, so it runs in a private mount namespace
// with the unified hierarchy unmounted, timed inside that namespace by
// bash's clock (no process started between the two readings but crun).
func timeCrun(b *testing.B, crun, bundle string, n int) []time.Duration {
	root := b.TempDir()
	script := fmt.Sprintf(`mountpoint -q /sys/fs/cgroup/unified && umount /sys/fs/cgroup/unified
i=0; while [ $i -lt %d ]; do
	s=$EPOCHREALTIME; %s --root %s run --bundle %s crun-bench-%d-$i >/dev/null || exit 1; e=$EPOCHREALTIME
	echo "$s $e"; i=$((i+1))
done`, n, crun, root, bundle, os.Getpid())
	out, err := exec.Command("unshare", "-m", "--propagation", "private", "bash", "-c", script).CombinedOutput()
	if err != nil {
		b.Fatalf("crun run: %v: %s", err, out)
	}
	var lat []time.Duration
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var s, e float64
		if _, err := fmt.Sscanf(line, "%f %f", &s, &e); err != nil {
			b.Fatalf("crun timing %q: %v", line, err)
		}
		lat = append(lat, time.Duration((e-s)*1e9))
	}
	if len(lat) != n {
		b.Fatalf("crun timing: %d runs, want %d: %s", len(lat), n, out)
	}
	return lat
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
