package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/protocol"
)

// BenchmarkContainerRunTrue times create → start → exit → delete of
// /bin/true through the whole bridge, and `runc run` and `crun run` of the
// same bundle, and reports the medians (at least 20 runs each) and their
// ratios. The three take turns, one run each, so that a change in the
// load of a shared machine during the benchmark weighs on all three alike.
//
// The three keep their state on one tmpfs, as they do in use: the agent's
// state root is /run/gcs (the utility VM's memory), runc's and crun's
// /run/runc and /run/crun. On the disk-backed /tmp of a test machine each
// state file or directory made or removed costs 0.2-0.5 ms of ext4
// journalling (about 1.3 ms of the agent's start here), which no
// deployment pays.
func BenchmarkContainerRunTrue(b *testing.B) {
	state := stateTmpfs(b)
	a := startContainerAgentIn(b, filepath.Join(state, "gcs"))
	ctx := context.Background()
	spec := a.spec("true")
	bundle := writeBundle(b, a, spec)
	var baselines []*baseline
	if runc, err := exec.LookPath("runc"); err == nil {
		baselines = append(baselines, newRunc(b, runc, bundle, filepath.Join(state, "runc")))
	} else {
		b.Log("SKIP (loud): runc is not installed; `make bench` installs it")
	}
	if crun, err := exec.LookPath("crun"); err == nil {
		baselines = append(baselines, newCrun(b, crun, bundle, filepath.Join(state, "crun")))
	} else {
		b.Log("SKIP (loud): crun is not installed; `make bench` installs it")
	}
	runGCS := func(i int) time.Duration {
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
		return time.Since(start)
	}

	n := max(b.N, 20)
	lat := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		if i < b.N {
			b.StartTimer()
		}
		lat = append(lat, runGCS(i))
		b.StopTimer()
		for _, bl := range baselines {
			bl.lat = append(bl.lat, bl.run(i))
		}
	}
	gcs := median(lat)
	b.ReportMetric(ms(gcs), "gcs-p50-ms")
	for _, bl := range baselines {
		r := median(bl.lat)
		b.ReportMetric(ms(r), bl.name+"-p50-ms")
		b.ReportMetric(float64(gcs)/float64(r), "ratio-vs-"+bl.name)
	}
}

// baseline is another runtime's run of the same bundle.
type baseline struct {
	name string
	run  func(i int) time.Duration
	lat  []time.Duration
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

// stateTmpfs mounts a tmpfs for the benchmark's state, unmounted when it
// ends (after the agent, whose cleanup was registered later, has gone).
func stateTmpfs(b *testing.B) string {
	dir := b.TempDir()
	if err := unix.Mount("uvmgcs-bench", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700,size=512m"); err != nil {
		b.Fatalf("mount a tmpfs for the benchmark's state: %v", err)
	}
	b.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			b.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// newRunc times one `runc run` of bundle per call, with its state in root.
func newRunc(b *testing.B, runc, bundle, root string) *baseline {
	return &baseline{name: "runc", run: func(i int) time.Duration {
		cmd := exec.Command(runc, "--root", root, "run", "--bundle", bundle, fmt.Sprintf("runc-bench-%d-%d", os.Getpid(), i))
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		if err != nil {
			b.Fatalf("runc run: %v: %s", err, out)
		}
		return d
	}}
}

// newCrun times one `crun run` of bundle per call, with its state in root.
// crun refuses this machine's hybrid cgroup layout, so it runs from a
// shell in a private mount namespace with the unified hierarchy unmounted,
// started once for the benchmark; the shell times each run with its own clock (no process
// started between the two readings but crun) and prints the readings.
func newCrun(b *testing.B, crun, bundle, root string) *baseline {
	errFile := filepath.Join(b.TempDir(), "stderr")
	script := fmt.Sprintf(`mountpoint -q /sys/fs/cgroup/unified && umount /sys/fs/cgroup/unified
while read -r i; do
	s=$EPOCHREALTIME; %s --root %s run --bundle %s crun-bench-%d-$i >/dev/null 2>%s || { echo "fail $i"; continue; }; e=$EPOCHREALTIME
	echo "$s $e"
done`, crun, root, bundle, os.Getpid(), errFile)
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "bash", "-c", script)
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("crun shell: %v", err)
	}
	b.Cleanup(func() {
		in.Close()
		cmd.Wait()
	})
	out := bufio.NewReader(outPipe)
	return &baseline{name: "crun", run: func(i int) time.Duration {
		if _, err := fmt.Fprintln(in, i); err != nil {
			b.Fatalf("crun shell: %v", err)
		}
		line, err := out.ReadString('\n')
		if err != nil {
			b.Fatalf("crun shell: %v", err)
		}
		var s, e float64
		if _, err := fmt.Sscanf(line, "%f %f", &s, &e); err != nil {
			msg, _ := os.ReadFile(errFile)
			b.Fatalf("crun run: %q: %s", line, msg)
		}
		return time.Duration((e - s) * 1e9)
	}}
}

// BenchmarkContainerExecRoundTrip times exec of `true` in a running
// container through the bridge, start to exit code.
func BenchmarkContainerExecRoundTrip(b *testing.B) {
	a := startContainerAgentIn(b, filepath.Join(stateTmpfs(b), "gcs"))
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
