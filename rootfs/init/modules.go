package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// moduleResults says what became of each module of the load list.
type moduleResults struct {
	loaded  int
	skipped []string // refused by this machine (no such device: a CPU feature is missing)
	failed  []string
}

// loadModules loads each .ko that list names (paths relative to dir),
// in order, with finit_module: the list is already in dependency order, so
// no modprobe is needed. A module that fails is reported, not fatal; one
// that wanted says this machine has no device for is not loaded.
func loadModules(list, dir string, wanted func(name string) bool) moduleResults {
	var res moduleResults
	start := time.Now()
	b, err := os.ReadFile(list)
	if err != nil {
		logf("modules: %v", err)
		res.failed = append(res.failed, list)
		return res
	}
	type timing struct {
		name string
		d    time.Duration
	}
	var slow []timing
	for _, rel := range parseModuleList(string(b)) {
		name := strings.TrimSuffix(filepath.Base(rel), ".ko")
		if !wanted(name) {
			res.skipped = append(res.skipped, name)
			continue
		}
		t0 := time.Now()
		err := loadModule(filepath.Join(dir, rel))
		slow = append(slow, timing{name, time.Since(t0)})
		switch {
		case err == nil || errors.Is(err, unix.EEXIST):
			res.loaded++
		case errors.Is(err, unix.ENODEV):
			res.skipped = append(res.skipped, name)
		default:
			res.failed = append(res.failed, fmt.Sprintf("%s (%v)", name, err))
		}
	}
	sort.Slice(slow, func(i, j int) bool { return slow[i].d > slow[j].d })
	var top []string
	for i := 0; i < len(slow) && i < 5; i++ {
		top = append(top, fmt.Sprintf("%s %dms", slow[i].name, slow[i].d.Milliseconds()))
	}
	logf("modules: slowest %s", strings.Join(top, ", "))
	logf("modules: %d loaded, %d not for this machine [%s], %d failed [%s] in %d ms",
		res.loaded, len(res.skipped), strings.Join(res.skipped, " "),
		len(res.failed), strings.Join(res.failed, ", "), time.Since(start).Milliseconds())
	return res
}

// virtioDeviceOf is the virtio device ID (VIRTIO_ID_* of the kernel's
// virtio_ids.h) a module serves and nothing else, or 0. The virtio vsock
// transport is the one on the load lists: a VM without a vsock device (QEMU
// without vhost-vsock, where the bridge uses the serial channel) does not
// need it, and its load costs 15-20 ms of a TCG boot.
func virtioDeviceOf(module string) uint32 {
	if module == "vmw_vsock_virtio_transport" {
		return 19 // VIRTIO_ID_VSOCK
	}
	return 0
}

// virtioDeviceWanted returns loadModules' wanted: a module that serves a
// virtio device type is wanted only when one of devices (the virtio bus's
// device directory, /sys/bus/virtio/devices) is of that type. The virtio
// transports come earlier in the list, and their probes have run by then.
func virtioDeviceWanted(devices string) func(name string) bool {
	return func(name string) bool {
		id := virtioDeviceOf(name)
		if id == 0 {
			return true
		}
		ents, err := os.ReadDir(devices)
		if err != nil {
			return true // no bus to ask: load it and let the kernel decide
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(devices, e.Name(), "device"))
			if err != nil {
				continue
			}
			var got uint32
			if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "0x%x", &got); err == nil && got == id {
				return true
			}
		}
		return false
	}
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.FinitModule(int(f.Fd()), "", 0)
}

// parseModuleList reads /etc/modules-load: one path a line; blank lines
// and # comments are skipped.
func parseModuleList(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}
