// Package vm holds the utility-VM integration tests: the real out/vmlinux
// and out/initrd.img (make all) booted under QEMU and driven only through
// host/. One VM is shared by the tests that do not need a fresh one.
package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/host/vm/qemu"
)

// outDir is make all's output directory, found from this package's
// directory (or $UVMGCS_OUT).
func outDir() string {
	if d := os.Getenv("UVMGCS_OUT"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "out")
}

// bootFiles are make all's outputs.
func bootFiles() (kernel, initrd string) { return bootFilesIn(outDir()) }

// bootFilesIn are the boot files in dir (out/, or out/debian for the
// benchmarks' baseline).
func bootFilesIn(dir string) (kernel, initrd string) {
	return filepath.Join(dir, "vmlinux"), filepath.Join(dir, "initrd.img")
}

// missing says why VM tests cannot run here, or "".
func missing() string {
	if os.Geteuid() != 0 {
		return "VM tests need root"
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86; `make all` does)"
	}
	k, i := bootFiles()
	for _, f := range []string{k, i} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Sprintf("%s is missing: run `make all`", f)
		}
	}
	return ""
}

func TestMain(m *testing.M) {
	if why := missing(); why != "" {
		fmt.Fprintln(os.Stderr, "##############################################################")
		fmt.Fprintln(os.Stderr, "## SKIPPING test/vm:", why)
		fmt.Fprintln(os.Stderr, "##############################################################")
	}
	code := m.Run()
	shared.close()
	os.Exit(code)
}

// console collects a VM's console for failure reports.
type console struct {
	mu  sync.Mutex
	buf strings.Builder
	// When the first line holding each of lineMarks arrived.
	seen map[string]time.Time
}

// lineMarks are console lines whose arrival the boot benchmark times: the
// init's first line and the agent's first.
var lineMarks = []string{"uvmgcs-init: kernel ", "gcs started"}

func (c *console) Write(p []byte) (int, error) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf.Len() < 1<<20 {
		c.buf.Write(p)
	}
	for _, m := range lineMarks {
		if _, ok := c.seen[m]; !ok && strings.Contains(string(p), m) {
			if c.seen == nil {
				c.seen = make(map[string]time.Time)
			}
			c.seen[m] = now
		}
	}
	return len(p), nil
}

// arrived is when the first line holding mark arrived (zero if none has).
func (c *console) arrived(mark string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[mark]
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// machine is a booted UVM and its console.
type machine struct {
	u        *uvm.UVM
	m        *qemu.VM
	console  *console
	launched time.Time // when Start was called
}

func (m *machine) gc() *host.GuestConnection { return m.u.GuestConnection() }

// boot starts a fresh VM.
func boot(tb testing.TB, extraArgs string) *machine {
	tb.Helper()
	return bootFrom(tb, outDir(), extraArgs)
}

// bootFrom starts a fresh VM from the boot files in dir.
func bootFrom(tb testing.TB, dir, extraArgs string) *machine {
	tb.Helper()
	return bootOn(tb, dir, qemu.MachineDefault, extraArgs)
}

// bootOn starts a fresh VM from the boot files in dir on a QEMU machine
// type (vm.Machine*).
func bootOn(tb testing.TB, dir, machineType, extraArgs string) *machine {
	tb.Helper()
	if why := missing(); why != "" {
		tb.Skip("SKIP (loud): " + why)
	}
	k, i := bootFilesIn(dir)
	con := &console{}
	q := qemu.New(vm.Config{Kernel: k, Initrd: i, KernelArgs: extraArgs, ConsoleLog: con}, qemu.Options{Machine: machineType})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	launched := time.Now()
	u, err := uvm.Start(ctx, q, uvm.Options{})
	if err != nil {
		q.Shutdown(context.Background())
		tb.Fatalf("boot: %v\nconsole:\n%s", err, con)
	}
	return &machine{u: u, m: q, console: con, launched: launched}
}

func (m *machine) close() {
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m.u.Shutdown(ctx)
}

// sharedVM is the VM most tests use, booted on first use.
type sharedVM struct {
	once sync.Once
	m    *machine
	err  string
}

var shared sharedVM

func (s *sharedVM) get(t *testing.T) *machine {
	t.Helper()
	if why := missing(); why != "" {
		t.Skip("SKIP (loud): " + why)
	}
	s.once.Do(func() {
		defer func() {
			if s.m == nil && s.err == "" {
				s.err = "boot failed"
			}
		}()
		s.m = boot(t, "")
	})
	if s.m == nil {
		t.Fatal("the shared VM did not boot: " + s.err)
	}
	return s.m
}

func (s *sharedVM) close() {
	if s.m != nil {
		s.m.close()
	}
}

func qemuNew(kernel, initrd string) *qemu.VM {
	return qemu.New(vm.Config{Kernel: kernel, Initrd: initrd}, qemu.Options{})
}
