package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// Console markers: the init's start and ready times (ms since the kernel
// booted) and the agent's start-to-negotiated time.
var (
	initStarted = regexp.MustCompile(`uvmgcs-init: kernel .* started at (\d+) ms`)
	initReady   = regexp.MustCompile(`uvmgcs-init: ready (\d+)`)
	agentReady  = regexp.MustCompile(`since-start(?:\x1b\[0m)?="?([0-9.]+(?:ns|µs|us|ms|s))`)
)

// BenchmarkVMBoot boots a VM per iteration and splits QEMU launch → agent
// negotiated into kernel boot, init, and agent start (TCG here: context,
// not a target). It also reports the initrd's size.
func BenchmarkVMBoot(b *testing.B) {
	var kernel, init, agent, total time.Duration
	for range b.N {
		m := boot(b, "")
		total += m.u.Negotiated
		m.close() // the console is complete once the VM is off
		con := m.console.String()
		s, r, a := initStarted.FindStringSubmatch(con), initReady.FindStringSubmatch(con), agentReady.FindStringSubmatch(con)
		if s == nil || r == nil || a == nil {
			b.Fatalf("markers missing from the console:\n%s", con)
		}
		sm, _ := strconv.Atoi(s[1])
		rm, _ := strconv.Atoi(r[1])
		ad, err := time.ParseDuration(a[1])
		if err != nil {
			b.Fatal(err)
		}
		kernel += time.Duration(sm) * time.Millisecond
		init += time.Duration(rm-sm) * time.Millisecond
		agent += ad
	}
	n := time.Duration(b.N)
	b.ReportMetric(float64((kernel / n).Milliseconds()), "kernel-ms")
	b.ReportMetric(float64((init / n).Milliseconds()), "init-ms")
	b.ReportMetric(float64((agent/n).Microseconds())/1000, "agent-ms")
	b.ReportMetric(float64((total / n).Milliseconds()), "launch-to-negotiated-ms")
	_, initrd := bootFiles()
	if st, err := os.Stat(initrd); err == nil {
		b.ReportMetric(float64(st.Size())/(1<<20), "initrd-MiB")
	}
}

// BenchmarkHostBridgeRunTrue times `host-bridge run -- true` end to end:
// image layer, VM boot, hot-plug, container, exit, shutdown.
func BenchmarkHostBridgeRunTrue(b *testing.B) {
	if why := missing(); why != "" {
		b.Skip("SKIP (loud): " + why)
	}
	k, _ := bootFiles()
	hb := filepath.Join(filepath.Dir(k), "host-bridge")
	if _, err := os.Stat(hb); err != nil {
		b.Skip("SKIP (loud): " + hb + " is missing: run `make build`")
	}
	b.ResetTimer()
	for range b.N {
		out, err := exec.Command(hb, "run", "-q", "--", "true").CombinedOutput()
		if err != nil {
			b.Fatalf("host-bridge run: %v\n%s", err, out)
		}
	}
}
