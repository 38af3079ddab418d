//go:build linux

package qemu

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testGuest is a Debian kernel and a tiny busybox initrd whose /init
// reports on the console (see testInit).
type testGuest struct {
	kernel, initrd string
}

// guestMarker is what testInit prints once its modules are loaded.
const guestMarker = "UVMGCS-TEST-GUEST-UP"

// guestModules are the modules testInit loads, with their dependencies.
func guestModules() []string {
	return []string{"virtio_pci", "virtio_console", "virtio_scsi", "sd_mod", "virtio_pmem", "nd_pmem"}
}

// testInit is the initrd's /init: mount the pseudo file systems, load the
// modules, say the marker, write a greeting to the virtio port named "gcs",
// then print the SCSI and pmem devices whenever they change.
const testInit = `#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec >/dev/console 2>&1 </dev/null
for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m 2>/dev/null; done
echo ` + guestMarker + `
port=""
for i in $(seq 100); do
	for d in /sys/class/virtio-ports/*; do
		[ "$(cat $d/name 2>/dev/null)" = gcs ] && port=$(basename $d)
	done
	[ -n "$port" ] && break
	sleep 0.1
done
echo "agent port: /dev/$port"
[ -n "$port" ] && echo hello-from-guest >/dev/$port &
last=""
while :; do
	cur="scsi=[$(ls /sys/bus/scsi/devices 2>/dev/null | grep '^[0-9]*:[0-9]*:[0-9]*:[0-9]*$' | tr '\n' ' ')] pmem=[$(ls /dev | grep '^pmem' | tr '\n' ' ')]"
	if [ "$cur" != "$last" ]; then echo "devices: $cur"; last="$cur"; fi
	sleep 0.2
done
`

// buildTestGuest finds or fetches the kernel and builds the initrd. It skips
// the test, loudly, when a tool or the kernel package cannot be had.
func buildTestGuest(t *testing.T) testGuest {
	t.Helper()
	for _, tool := range []string{Binary, "apt-cache", "apt-get", "dpkg-deb", "depmod", "modprobe", "cpio"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPING VM boot test: %s not found (apt-get install qemu-system-x86 cpio kmod)", tool)
		}
	}
	busybox := staticBusybox(t)
	kdir := cachedKernel(t)

	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "lib/modules"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	copyFile(t, busybox, filepath.Join(root, "bin/busybox"), 0o755)
	must(t, os.WriteFile(filepath.Join(root, "init"), []byte(testInit), 0o755))
	order, err := os.ReadFile(filepath.Join(kdir, "load-order"))
	must(t, err)
	for _, m := range strings.Fields(string(order)) {
		copyFile(t, filepath.Join(kdir, m), filepath.Join(root, "lib/modules", m), 0o644)
	}
	must(t, os.WriteFile(filepath.Join(root, "lib/modules/load-order"), order, 0o644))

	initrd := filepath.Join(t.TempDir(), "initrd.img")
	writeCpioGz(t, root, initrd)
	return testGuest{kernel: filepath.Join(kdir, "vmlinuz"), initrd: initrd}
}

// staticBusybox returns a statically linked busybox (Debian busybox-static).
func staticBusybox(t *testing.T) string {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		static := true
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if static {
			return p
		}
	}
	t.Skip("SKIPPING VM boot test: no statically linked busybox (apt-get install busybox-static)")
	return ""
}

// cachedKernel returns a directory holding vmlinuz, the guest modules and
// their load order, fetching Debian's current kernel package into
// os.TempDir()/uvmgcs-kernel-cache on first use.
func cachedKernel(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		t.Skipf("SKIPPING VM boot test: apt-cache depends linux-image-amd64: %v (run apt-get update)", err)
	}
	var pkg string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			pkg = f[1]
			break
		}
	}
	if pkg == "" {
		t.Skipf("SKIPPING VM boot test: no kernel package named by apt-cache depends linux-image-amd64:\n%s", out)
	}
	cache := filepath.Join(os.TempDir(), "uvmgcs-kernel-cache")
	h := fnv.New32a()
	io.WriteString(h, strings.Join(guestModules(), ","))
	dir := filepath.Join(cache, fmt.Sprintf("%s-%08x", pkg, h.Sum32()))
	if _, err := os.Stat(filepath.Join(dir, "load-order")); err == nil {
		return dir
	}
	must(t, os.MkdirAll(cache, 0o755))
	work, err := os.MkdirTemp(cache, pkg+".tmp-")
	must(t, err)
	defer os.RemoveAll(work)
	must(t, os.Chmod(work, 0o755)) // apt-get download drops to the _apt user where it can
	if out, err := run(work, "apt-get", "download", pkg); err != nil {
		t.Skipf("SKIPPING VM boot test: apt-get download %s: %v\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(work, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download %s left %v", pkg, debs)
	}
	x := filepath.Join(work, "x")
	runOK(t, work, "dpkg-deb", "-x", debs[0], x)
	version := strings.TrimPrefix(pkg, "linux-image-")
	runOK(t, work, "depmod", "-b", x, version)

	keep := filepath.Join(work, "keep")
	must(t, os.Mkdir(keep, 0o755))
	copyFile(t, filepath.Join(x, "boot", "vmlinuz-"+version), filepath.Join(keep, "vmlinuz"), 0o644)
	var order []string
	seen := map[string]bool{}
	for _, m := range guestModules() {
		out := runOK(t, work, "modprobe", "-d", x, "-S", version, "--show-depends", m)
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) < 2 || f[0] != "insmod" {
				continue // "builtin x"
			}
			name := filepath.Base(f[1])
			if !seen[name] {
				seen[name] = true
				order = append(order, name)
				copyFile(t, f[1], filepath.Join(keep, name), 0o644)
			}
		}
	}
	must(t, os.WriteFile(filepath.Join(keep, "load-order"), []byte(strings.Join(order, "\n")+"\n"), 0o644))
	if err := os.Rename(keep, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "load-order")); serr != nil {
			t.Fatalf("cache kernel: %v", err)
		} // another run filled the cache first
	}
	t.Logf("cached %s (modules %v) in %s", pkg, order, dir)
	return dir
}

// writeCpioGz packs root into a gzip'd newc cpio archive at dst.
func writeCpioGz(t *testing.T, root, dst string) {
	t.Helper()
	var list bytes.Buffer
	must(t, filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, err := filepath.Rel(root, p)
		fmt.Fprintln(&list, rel)
		return err
	}))
	f, err := os.Create(dst)
	must(t, err)
	defer f.Close()
	zw := gzip.NewWriter(f)
	var stderr bytes.Buffer
	cmd := exec.Command("cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0")
	cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = root, &list, zw, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cpio: %v: %s", err, stderr.String())
	}
	must(t, zw.Close())
}

func run(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func runOK(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	out, err := run(dir, name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	must(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	must(t, err)
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	must(t, out.Close())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
