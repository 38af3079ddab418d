package vm

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/host/vm/qemu"
	"github.com/uvmgcs/gcs/protocol"
)

// Console markers: the init's start and ready times (ms since the kernel
// booted) and the agent's start-to-negotiated time.
var (
	initStarted = regexp.MustCompile(`uvmgcs-init: kernel .* started at (\d+) ms`)
	initReady   = regexp.MustCompile(`uvmgcs-init: ready (\d+)`)
	agentReady  = regexp.MustCompile(`since-start(?:\x1b\[0m)?="?([0-9.]+(?:ns|µs|us|ms|s))`)
	kernelVar   = regexp.MustCompile(`(?m)\bKERNEL=(\w+)`)
)

// bootSet is one set of boot files the benchmarks measure.
type bootSet struct{ name, dir string }

// bootSets are make all's files (out/, named by the KERNEL they were built
// with) and, when `make bench` built them, the Debian kernel's in
// out/debian: each benchmark reports both from the same run, the second as
// the baseline.
func bootSets() []bootSet {
	sets := []bootSet{{kernelName(outDir()), outDir()}}
	base := os.Getenv("UVMGCS_BASELINE_OUT")
	if base == "" {
		base = filepath.Join(outDir(), "debian")
	}
	if k, i := bootFilesIn(base); fileExists(k) && fileExists(i) {
		sets = append(sets, bootSet{kernelName(base), base})
	}
	return sets
}

// kernelName is the KERNEL that built dir's files (make's boot-inputs).
func kernelName(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "boot-inputs"))
	if m := kernelVar.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return filepath.Base(dir)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// machines are the QEMU machine types the boot and memory benchmarks try.
var machines = []string{qemu.MachinePC, qemu.MachineMicroVM}

// BenchmarkVMBoot boots a VM per iteration and splits QEMU launch → agent
// negotiated (TCG here: context, not a target), for each kernel on each
// machine type, into stages timed on the host's clock:
//
//	qemu-ms    launch until QEMU's sockets answer
//	kernel-ms  until the init's first console line: firmware, the kernel's
//	           load and boot, initcalls, the initrd's unpacking, and the
//	           init's own start-up (Go runtime, /proc, /sys, /dev)
//	init-ms    the init's start until it starts the agent (its own clock)
//	exec-ms    the agent's exec and Go start-up until its first line
//	agent-ms   the agent's start until it negotiated (its own clock)
//
// qemu-cpu-ms is the CPU time QEMU had used by then (all its threads):
// on a machine others load too it moves far less than the wall-clock
// stages. kernel-clock-ms is the guest kernel's own clock when the init started;
// under TCG its zero is not the kernel's entry, so it is context only. It
// also reports the initrd's size.
func BenchmarkVMBoot(b *testing.B) {
	for _, s := range bootSets() {
		for _, mt := range machines {
			b.Run("kernel="+s.name+"/machine="+mt, func(b *testing.B) { benchBoot(b, s.dir, mt) })
		}
	}
}

func benchBoot(b *testing.B, dir, machineType string) {
	var qemuStart, kernel, kernelClock, init, exec, agent, total, cpu time.Duration
	for range b.N {
		m := bootOn(b, dir, machineType, "")
		total += m.u.Negotiated
		cpu += cpuTime(b, m.m.Pid())
		qemuStart += m.u.Booted
		m.close() // the console is complete once the VM is off
		con := m.console.String()
		s, r, a := initStarted.FindStringSubmatch(con), initReady.FindStringSubmatch(con), agentReady.FindStringSubmatch(con)
		initLine, gcsLine := m.console.arrived(lineMarks[0]), m.console.arrived(lineMarks[1])
		if s == nil || r == nil || a == nil || initLine.IsZero() || gcsLine.IsZero() {
			b.Fatalf("markers missing from the console:\n%s", con)
		}
		sm, _ := strconv.Atoi(s[1])
		rm, _ := strconv.Atoi(r[1])
		ad, err := time.ParseDuration(a[1])
		if err != nil {
			b.Fatal(err)
		}
		i := time.Duration(rm-sm) * time.Millisecond
		kernelClock += time.Duration(sm) * time.Millisecond
		kernel += initLine.Sub(m.launched) - m.u.Booted
		init += i
		exec += gcsLine.Sub(initLine) - i
		agent += ad
	}
	n := time.Duration(b.N)
	ms := func(d time.Duration) float64 { return float64((d / n).Microseconds()) / 1000 }
	b.ReportMetric(ms(qemuStart), "qemu-ms")
	b.ReportMetric(ms(kernel), "kernel-ms")
	b.ReportMetric(ms(kernelClock), "kernel-clock-ms")
	b.ReportMetric(ms(init), "init-ms")
	b.ReportMetric(ms(exec), "exec-ms")
	b.ReportMetric(ms(agent), "agent-ms")
	b.ReportMetric(ms(total), "launch-to-negotiated-ms")
	b.ReportMetric(ms(cpu), "qemu-cpu-ms")
	_, initrd := bootFilesIn(dir)
	if st, err := os.Stat(initrd); err == nil {
		b.ReportMetric(float64(st.Size())/(1<<20), "initrd-MiB")
	}
}

// cpuTime is the user and system CPU time process pid has used
// (/proc/PID/stat, in clock ticks of 10 ms).
func cpuTime(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command's closing parenthesis: state is the 3rd
	// field of stat, utime the 14th and stime the 15th.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		tb.Fatalf("pid %d: short stat %q", pid, b)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("pid %d: stat %q", pid, b)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// settle is how long a VM sits idle before its memory is read: the guest
// reports freed pages to the host about two seconds after freeing them.
const settle = 5 * time.Second

// BenchmarkVMMemory reads QEMU's resident memory on the host: a booted,
// idle VM, then the same VM running a container (`sleep` on an ext4 layer
// and a scratch disk), each after settling. Each iteration boots a VM.
// RSS counts in full the file pages QEMU shares with other processes (its
// binary and libraries, when other VMs run); idle-pss-MiB divides them
// among their sharers.
func BenchmarkVMMemory(b *testing.B) {
	for _, s := range bootSets() {
		for _, mt := range machines {
			b.Run("kernel="+s.name+"/machine="+mt, func(b *testing.B) { benchMemory(b, s.dir, mt) })
		}
	}
}

func benchMemory(b *testing.B, dir, machineType string) {
	layerImg, scratchImg := images(b)
	var idle, idlePss, busy float64
	for it := range b.N {
		m := bootOn(b, dir, machineType, "")
		time.Sleep(settle)
		idle += rssMiB(b, m.m.Pid())
		idlePss += memMiB(b, "/proc/"+strconv.Itoa(m.m.Pid())+"/smaps_rollup", "Pss:")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		c, err := m.u.CreateContainer(ctx, "mem"+strconv.Itoa(it), host.DefaultSpec("", []string{"sleep", "1000"}, false),
			uvm.ContainerConfig{RootFS: uvm.RootFS{Layers: []string{layerImg}, Scratch: scratchImg}})
		if err != nil {
			cancel()
			m.close() // the VM and its state directory go, pass or fail
			b.Fatalf("create: %v\nconsole:\n%s", err, m.console)
		}
		if _, err := c.CreateProcess(ctx, &protocol.ProcessParameters{}); err != nil {
			cancel()
			m.close()
			b.Fatalf("start: %v\nconsole:\n%s", err, m.console)
		}
		time.Sleep(settle)
		busy += rssMiB(b, m.m.Pid())
		cancel()
		m.close() // the VM goes, and the container with it
	}
	b.ReportMetric(idle/float64(b.N), "idle-rss-MiB")
	b.ReportMetric(idlePss/float64(b.N), "idle-pss-MiB")
	b.ReportMetric(busy/float64(b.N), "container-rss-MiB")
}

// rssMiB is a process's resident set (VmRSS) in MiB.
func rssMiB(tb testing.TB, pid int) float64 {
	return memMiB(tb, "/proc/"+strconv.Itoa(pid)+"/status", "VmRSS:")
}

// memMiB is the "key: N kB" line of a /proc file, in MiB.
func memMiB(tb testing.TB, file, key string) float64 {
	tb.Helper()
	f, err := os.Open(file)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				tb.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	tb.Fatalf("%s: no %s", file, key)
	return 0
}

// BenchmarkHostBridgeRunTrue times `host-bridge run -- true` end to end:
// image layer, VM boot, hot-plug, container, exit, shutdown.
func BenchmarkHostBridgeRunTrue(b *testing.B) {
	if why := missing(); why != "" {
		b.Skip("SKIP (loud): " + why)
	}
	hb := filepath.Join(outDir(), "host-bridge")
	if _, err := os.Stat(hb); err != nil {
		b.Skip("SKIP (loud): " + hb + " is missing: run `make build`")
	}
	for _, s := range bootSets() {
		k, i := bootFilesIn(s.dir)
		for _, mt := range machines {
			b.Run("kernel="+s.name+"/machine="+mt, func(b *testing.B) {
				for range b.N {
					out, err := exec.Command(hb, "run", "-q", "--kernel", k, "--initrd", i, "--machine", mt, "--", "true").CombinedOutput()
					if err != nil {
						b.Fatalf("host-bridge run: %v\n%s", err, out)
					}
				}
			})
		}
	}
}
