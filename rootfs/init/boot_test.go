package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tuned command line of docs/vm-on-this-machine.md.
const tunedCmdline = "console=ttyS0 panic=-1 quiet cryptomgr.notests mitigations=off no_timer_check " +
	"tsc=reliable audit=0 apparmor=0 random.trust_cpu=on"

const bootTimeout = 60 * time.Second

var markerRE = regexp.MustCompile(`^uvmgcs-init: ready (\d+)$`)

// TestBoot boots the real initrd (make all) under QEMU and checks that the
// init comes up, loads every module it can, starts gcs with the flags of the
// command line, and powers the VM off by itself once gcs exits. gcs is given
// a transport it refuses, so it exits at once.
func TestBoot(t *testing.T) {
	kernel, initrd := bootFiles(t)
	for _, tc := range []struct {
		name, params, cgroupLine string
	}{
		{"cgroup v2", "gcs.loglevel=debug", "uvmgcs-init: cgroup v2 at /sys/fs/cgroup: "},
		{"cgroup v1", "gcs.cgroup=v1", "uvmgcs-init: cgroup v1 at /sys/fs/cgroup: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := tc.params + " gcs.transport=none-for-test"
			console, marker := bootQEMU(t, kernel, initrd, tunedCmdline+" "+params)
			defer func() {
				if t.Failed() || testing.Verbose() {
					t.Logf("console:\n%s", console)
				}
			}()

			mustContain(t, console, tc.cgroupLine+"cpu")
			// Cgroup migrations (each container start) wait for no grace period.
			mustContain(t, console, "("+favorDynmods+")")
			// QEMU's list, all of it, and no Hyper-V module.
			if m := regexp.MustCompile(`uvmgcs-init: modules: (\d+) loaded, (\d+) not for this machine`).FindStringSubmatch(console); m != nil {
				loaded, _ := strconv.Atoi(m[1])
				skipped, _ := strconv.Atoi(m[2])
				if want := bootListLength(t, initrd); loaded+skipped != want {
					t.Errorf("%d modules loaded and %d skipped, want the %d of /etc/modules-load", loaded, skipped, want)
				}
			}
			if strings.Contains(console, hyperVList) {
				t.Errorf("the QEMU boot used %s", hyperVList)
			}
			if m := regexp.MustCompile(`uvmgcs-init: modules: (\d+) loaded, .* (\d+) failed \[(.*)\]`).FindStringSubmatch(console); m == nil {
				t.Errorf("no module summary")
			} else {
				t.Logf("modules: %s loaded, failed: [%s]", m[1], m[3])
				if m[2] != "0" {
					t.Errorf("%s modules failed to load: %s", m[2], m[3])
				}
			}
			want := "uvmgcs-init: starting /bin/gcs -transport=none-for-test -state-root=/run/gcs"
			if tc.params == "gcs.loglevel=debug" {
				want += " -loglevel=debug"
			}
			mustContain(t, console, want+"\n")
			// One copy of the agent in RAM, sealed: the initramfs file is gone.
			mustContain(t, console, "uvmgcs-init: gcs runs from a sealed memfd (/bin/gcs removed: true)\n")
			mustContain(t, console, "uvmgcs-init: gcs exited with status ")
			mustContain(t, console, "uvmgcs-init: power off")
			if strings.Contains(console, "Kernel panic") {
				t.Errorf("the kernel panicked")
			}
			t.Logf("boot: marker at %d ms of kernel time, %v after QEMU started", marker.sinceBoot, marker.wall.Round(time.Millisecond))
		})
	}
}

// TestBootFatalErrorPowersOff replaces /bin/gcs with a file the kernel
// cannot execute: the init must say so and power the VM off, not hang or
// panic.
func TestBootFatalErrorPowersOff(t *testing.T) {
	kernel, initrd := bootFiles(t)
	img, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel unpacks archives appended to the initrd in turn, later
	// files replacing earlier ones. lz4's legacy format has no end mark:
	// the kernel reads an lz4 initrd to its end, so what follows it must be
	// lz4 too (a new stream's magic number continues it).
	img = append(img, lz4Legacy(t, newcArchive("bin/gcs", 0o100755, []byte("not an executable\n")))...)
	broken := filepath.Join(t.TempDir(), "initrd.img")
	if err := os.WriteFile(broken, img, 0o644); err != nil {
		t.Fatal(err)
	}
	console, _ := bootQEMU(t, kernel, broken, tunedCmdline)
	mustContain(t, console, "uvmgcs-init: fatal: start /bin/gcs: exec format error")
	mustContain(t, console, "uvmgcs-init: power off")
	if t.Failed() {
		t.Logf("console:\n%s", console)
	}
}

// newcArchive is a cpio "newc" archive holding one file.
// lz4Legacy compresses b in lz4's legacy format, the one the kernel
// unpacks, with the lz4 tool make all uses for the initrd.
func lz4Legacy(t *testing.T, b []byte) []byte {
	t.Helper()
	cmd := exec.Command("lz4", "-l", "-q", "-c")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lz4: %v", err)
	}
	return out
}

func newcArchive(name string, mode uint32, data []byte) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	entry := func(name string, mode uint32, data []byte) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name + "\x00")
		pad()
		b.Write(data)
		pad()
	}
	entry(name, mode, data)
	entry("TRAILER!!!", 0, nil)
	return b.Bytes()
}

type bootMarker struct {
	sinceBoot int           // as the init printed it
	wall      time.Duration // from starting QEMU to reading the line
}

// bootQEMU boots kernel and initrd with cmdline, waits for QEMU to exit by
// itself (the guest powering off) and returns the console output and when
// the ready marker appeared.
func bootQEMU(t *testing.T, kernel, initrd, cmdline string) (string, bootMarker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio", "-no-reboot", "-net", "none", "-m", "512", "-smp", "1",
		"-kernel", kernel, "-initrd", initrd, "-append", cmdline)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var console strings.Builder
	marker := bootMarker{sinceBoot: -1}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		console.WriteString(line + "\n")
		if m := markerRE.FindStringSubmatch(line); m != nil && marker.sinceBoot < 0 {
			marker.wall = time.Since(start)
			marker.sinceBoot, _ = strconv.Atoi(m[1])
		}
	}
	err = cmd.Wait()
	out := console.String()
	if ctx.Err() != nil {
		t.Fatalf("QEMU still running after %v (the guest did not power off); console:\n%s", bootTimeout, out)
	}
	if err != nil {
		t.Fatalf("QEMU: %v\nstderr: %s\nconsole:\n%s", err, stderr.String(), out)
	}
	if marker.sinceBoot < 0 {
		t.Fatalf("no %q line on the console:\n%s", "uvmgcs-init: ready <ms>", out)
	}
	return out, marker
}

// bootFiles finds out/vmlinux and out/initrd.img (make all) and QEMU, or
// skips the test saying what is missing.
func bootFiles(t *testing.T) (kernel, initrd string) {
	t.Helper()
	out, err := filepath.Abs(filepath.Join("..", "..", "out"))
	if err != nil {
		t.Fatal(err)
	}
	kernel, initrd = filepath.Join(out, "vmlinux"), filepath.Join(out, "initrd.img")
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("SKIPPING VM BOOT: %v (run `make all`)", err)
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skipf("SKIPPING VM BOOT: no qemu-system-x86_64 (`make boot-deps` installs it): %v", err)
	}
	return kernel, initrd
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("console lacks %q", sub)
	}
}
