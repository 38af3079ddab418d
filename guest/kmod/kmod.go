// Package kmod owns loading kernel modules on demand in the utility VM:
// the init loads only what boot needs, and the agent loads a resource's
// modules (a file system, device-mapper targets, pmem, a NIC driver) the
// first time a request needs them. It reads depmod's modules.dep and loads
// each module's dependencies first with finit_module, as modprobe would.
// A module the kernel has built in (modules.builtin) costs nothing: on the
// UVM kernel (rootfs/kernel.config) nearly all of them are.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Loader loads modules from one modules directory. It is safe for
// concurrent use; a module already loaded (or built in) costs a stat.
type Loader struct {
	dir    string // /lib/modules/<release>
	sysMod string // /sys/module

	mu      sync.Mutex
	deps    map[string][]string // module name -> path, then its dependencies' paths
	err     error
	builtin map[string]bool // modules.builtin, read once; nil until then
}

// New returns a loader for the running kernel's modules under root
// (normally "/lib/modules"), checking loaded modules in sysModule
// (normally "/sys/module").
func New(root, sysModule string) *Loader {
	var u unix.Utsname
	release := ""
	if unix.Uname(&u) == nil {
		release = unix.ByteSliceToString(u.Release[:])
	}
	return &Loader{dir: filepath.Join(root, release), sysMod: sysModule}
}

// name normalises a module name: modprobe treats '-' and '_' alike.
func name(s string) string { return strings.ReplaceAll(s, "-", "_") }

// Load loads each named module with its dependencies. A module the kernel
// has built in or already loaded is no error; one this machine cannot use
// (ENODEV: a missing CPU feature) is skipped.
func (l *Loader) Load(names ...string) error {
	var errs []error
	for _, n := range names {
		if l.loaded(n) {
			continue
		}
		paths, err := l.closure(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range paths {
			if err := finit(filepath.Join(l.dir, p)); err != nil {
				errs = append(errs, fmt.Errorf("load %s: %w", p, err))
				break
			}
		}
	}
	return errors.Join(errs...)
}

func (l *Loader) loaded(n string) bool {
	if l.isBuiltin(n) {
		return true
	}
	_, err := os.Stat(filepath.Join(l.sysMod, name(n)))
	return err == nil
}

// isBuiltin reports whether the kernel has n built in. /sys/module does
// not show every built-in module (only those with parameters or a
// version), modules.builtin does.
func (l *Loader) isBuiltin(n string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.builtin == nil {
		l.builtin = readBuiltin(filepath.Join(l.dir, "modules.builtin"))
	}
	return l.builtin[name(n)]
}

// readBuiltin parses modules.builtin, one path a line
// ("kernel/fs/ext4/ext4.ko"); a missing file is an empty set.
func readBuiltin(path string) map[string]bool {
	set := map[string]bool{}
	b, err := os.ReadFile(path)
	if err != nil {
		return set
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			set[moduleName(line)] = true
		}
	}
	return set
}

// moduleName is the normalised name of a module file path.
func moduleName(path string) string {
	base := filepath.Base(path)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		base = strings.TrimSuffix(base, ext)
	}
	return name(base)
}

// closure returns the module files to load for n, dependencies first.
func (l *Loader) closure(n string) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.deps == nil && l.err == nil {
		l.deps, l.err = readDeps(filepath.Join(l.dir, "modules.dep"))
	}
	if l.err != nil {
		return nil, l.err
	}
	d, ok := l.deps[name(n)]
	if !ok {
		return nil, fmt.Errorf("module %s: not in %s", n, l.dir)
	}
	// modules.dep lists a module's dependencies so that loading them in
	// reverse order satisfies each before its users.
	out := make([]string, 0, len(d))
	for i := len(d) - 1; i >= 1; i-- {
		out = append(out, d[i])
	}
	return append(out, d[0]), nil
}

// readDeps parses modules.dep: "path: dep dep ...".
func readDeps(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps := make(map[string][]string)
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		mod, rest, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		deps[moduleName(mod)] = append([]string{mod}, strings.Fields(rest)...)
	}
	return deps, s.Err()
}

func finit(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err == nil || errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	return err
}
