package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/layer"
	"github.com/uvmgcs/gcs/host/uvm"
)

// usesSocketDir tells the runc-style run (against a running agent) from the
// VM run (boots its own utility VM).
func usesSocketDir(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		for _, f := range []string{"socket-dir", "uvm"} {
			if a == "--"+f || a == "-"+f || strings.HasPrefix(a, "--"+f+"=") || strings.HasPrefix(a, "-"+f+"=") {
				return true
			}
		}
	}
	return false
}

// runDispatch serves `run`: runc-style with --socket-dir, else in a VM.
func runDispatch(args []string) (int, error) {
	if usesSocketDir(args) {
		return runMain(args)
	}
	return vmRunMain(args)
}

// vmRunMain boots a utility VM, puts the image on a read-only layer disk
// and a scratch disk, runs the command in a container on them, relays its
// stdio and exits with its exit code.
func vmRunMain(args []string) (int, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	image := fs.String("image", "", "qemu: a directory or a tar to run (default: busybox); hcs: an ext4 layer VHD (default: busybox.vhd next to host-bridge; see host-bridge layer)")
	tty := fs.Bool("t", false, "allocate a terminal")
	interactive := fs.Bool("i", false, "keep stdin open")
	scratchMiB := fs.Int64("scratch", 256, "scratch disk size in MiB")
	var volumeFlags multiFlag
	fs.Var(&volumeFlags, "v", "HOST:GUEST[:ro]: share the host directory into the container at GUEST (9p over the agent channel; repeatable)")
	vf := addVMFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2, usageError{err}
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return 2, usageError{errors.New("run: no command given (host-bridge run [--image DIR|TAR] [-v HOST:GUEST[:ro]] -- cmd args)")}
	}
	volumes, err := parseVolumes(volumeFlags)
	if err != nil {
		return 2, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, release, err := vf.machine()
	if err != nil {
		return 1, err
	}
	defer release()

	work, err := os.MkdirTemp("", "host-bridge-run-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(work)
	// The disks are made while the VM boots: neither waits for the other.
	t0 := time.Now()
	type booted struct {
		u        *uvm.UVM
		shutdown func()
		err      error
	}
	boot := make(chan booted, 1)
	go func() {
		bctx, cancel := context.WithTimeout(ctx, vmBootTimeout)
		defer cancel()
		u, shutdown, err := vf.boot(bctx, m)
		boot <- booted{u, shutdown, err}
	}()
	disks, derr := runDisks(ctx, vf.driver, *image, work, *scratchMiB)
	if derr == nil {
		vf.progress("image layer and scratch disks ready in %v", time.Since(t0).Round(time.Millisecond))
	}
	b := <-boot
	if b.err != nil {
		return 1, b.err
	}
	// The VM goes down with the container, and its disks and mounts with
	// it: the container is not taken apart first (unmounts, unplugs).
	defer b.shutdown()
	if derr != nil {
		return 1, derr
	}
	u := b.u

	t1 := time.Now()
	id := "run-" + randomHex(6)
	spec := host.DefaultSpec("", argv, *tty)
	c, err := u.CreateContainer(ctx, id, spec, uvm.ContainerConfig{
		RootFS: uvm.RootFS{Layers: []string{disks.layer}, Scratch: disks.scratch, BlankScratch: disks.blankScratch},
		Mounts: volumes,
	})
	if err != nil {
		return 1, fmt.Errorf("run the image in the VM: %w", err)
	}
	params := stdioParams(*tty, *interactive)
	if *tty {
		defer localConsole(params)()
	}
	p, err := c.CreateProcess(ctx, params)
	if err != nil {
		return 1, err
	}
	vf.progress("container started in %v", time.Since(t1).Round(time.Millisecond))
	code, err := attach(ctx, p, *tty)
	c.Wait()
	return code, err
}

// runFiles are the disks run attaches: the image's layer and a scratch
// disk, which is blank when the guest is to format it.
type runFiles struct {
	layer, scratch string
	blankScratch   bool
}

// runDisks makes run's disks in work. For QEMU both are raw ext4 images
// made here. HCS attaches only VHD files: the image must be one already
// (host-bridge layer makes it on Linux), and the scratch is a blank fixed
// VHD that the guest formats, so nothing here needs mke2fs.
func runDisks(ctx context.Context, driver, image, work string, scratchMiB int64) (runFiles, error) {
	if driver == driverHCS {
		if image == "" {
			image = filepath.Join(bootDir(), "busybox.vhd")
		}
		if !layer.IsVHD(image) {
			return runFiles{}, usageError{fmt.Errorf("--image %s: the hcs driver attaches VHD files: make one with `host-bridge layer -o busybox.vhd` on Linux", image)}
		}
		if _, err := os.Stat(image); err != nil {
			return runFiles{}, fmt.Errorf("image layer: %w (make it on Linux with `host-bridge layer -o busybox.vhd` and copy it next to host-bridge.exe)", err)
		}
		f := runFiles{layer: image, scratch: filepath.Join(work, "scratch.vhd"), blankScratch: true}
		if err := layer.BlankVHD(f.scratch, scratchMiB); err != nil {
			return runFiles{}, fmt.Errorf("scratch disk: %w", err)
		}
		return f, nil
	}
	f := runFiles{layer: filepath.Join(work, "layer.img"), scratch: filepath.Join(work, "scratch.img")}
	if err := layer.FromImage(ctx, image, f.layer); err != nil {
		return runFiles{}, err
	}
	if err := layer.Scratch(ctx, f.scratch, scratchMiB); err != nil {
		return runFiles{}, err
	}
	return f, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
