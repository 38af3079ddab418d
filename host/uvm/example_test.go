//go:build linux

package uvm_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/layer"
	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/host/vm/qemu"
	"github.com/uvmgcs/gcs/protocol"
)

// The examples boot make all's kernel and initrd (out/, or $UVMGCS_OUT).
var kernel, initrd = bootFiles()

func bootFiles() (string, string) {
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(filepath.Dir(file), "..", "..", "out")
	if d := os.Getenv("UVMGCS_OUT"); d != "" {
		out = d
	}
	return filepath.Join(out, "vmlinux"), filepath.Join(out, "initrd.img")
}

// TestMain runs the examples only where a VM boots: as root, with QEMU,
// busybox and make all's boot files; elsewhere it says so loudly.
func TestMain(m *testing.M) {
	flag.Parse()
	why := ""
	if os.Geteuid() != 0 {
		why = "they need root"
	} else if _, err := exec.LookPath(qemu.Binary); err != nil {
		why = qemu.Binary + " is not installed"
	} else if _, err := os.Stat(layer.DefaultBusybox); err != nil {
		why = layer.DefaultBusybox + " (busybox-static) is missing"
	}
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(f); why == "" && err != nil {
			why = f + " is missing: run `make all`"
		}
	}
	if why == "" && raceEnabled {
		why = "the race detector is on (they boot VMs; the 9p server has a known benign race)"
	}
	if why != "" && flag.Lookup("test.run").Value.String() == "" {
		fmt.Fprintln(os.Stderr, "## SKIPPING the host/uvm examples (they boot a VM):", why)
		flag.Set("test.run", "^Test")
	}
	os.Exit(m.Run())
}

// Boot a utility VM, run a container from an image directory on the host,
// and exec into it.
func ExampleUVM_CreateContainer() {
	ctx := context.Background()
	u, err := uvm.Start(ctx, qemu.New(vm.Config{Kernel: kernel, Initrd: initrd}, qemu.Options{}), uvm.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer u.Shutdown(ctx)

	// An image directory becomes a read-only layer disk (cached by its
	// content: containers of one image share one attachment); a scratch
	// disk takes the container's writes.
	work, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(work)
	image := filepath.Join(work, "image")
	if err := layer.Busybox(ctx, layer.DefaultBusybox, image); err != nil {
		log.Fatal(err)
	}
	lay, err := layer.Cache{Dir: filepath.Join(work, "layers")}.Layer(ctx, image)
	if err != nil {
		log.Fatal(err)
	}
	scratch := filepath.Join(work, "scratch.img")
	if err := layer.Scratch(ctx, scratch, 64); err != nil {
		log.Fatal(err)
	}
	spec := host.DefaultSpec("", []string{"sh", "-c", "echo hello from $(hostname); sleep 600"}, false)
	c, err := u.CreateContainer(ctx, "example", spec, uvm.ContainerConfig{
		RootFS: uvm.RootFS{Layers: []string{lay}, Scratch: scratch},
	})
	if err != nil {
		log.Fatal(err)
	}
	init, err := c.CreateProcess(ctx, &protocol.ProcessParameters{CreateStdOutPipe: true})
	if err != nil {
		log.Fatal(err)
	}
	line := make([]byte, len("hello from uvmgcs\n"))
	io.ReadFull(init.Stdout(), line)
	fmt.Print(string(line))

	// Exec a second process into the running container.
	p, err := c.Exec(ctx, &specs.Process{Args: []string{"ls", "/bin/busybox"}, Cwd: "/"},
		&protocol.ProcessParameters{CreateStdOutPipe: true})
	if err != nil {
		log.Fatal(err)
	}
	io.Copy(os.Stdout, p.Stdout())
	p.Wait()

	// Kill and delete it: its layer and scratch disks are unmounted and
	// unplugged.
	c.Kill(ctx)
	init.Close()
	if err := c.Delete(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(u.Resources()), "resources left")
	// Output:
	// hello from uvmgcs
	// /bin/busybox
	// 0 resources left
}

// Share a host directory with the VM: the UVM's default sharer serves it
// over 9p on a port of the agent channel, the guest dials that port and
// mounts it (on any driver; the server lives in this process).
func ExampleUVM_AddShare() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "shared-")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "note"), []byte("written on the host\n"), 0o644)

	u, err := uvm.Start(ctx, qemu.New(vm.Config{Kernel: kernel, Initrd: initrd}, qemu.Options{}), uvm.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer u.Shutdown(ctx)

	share, err := u.AddShare(ctx, dir, true)
	if err != nil {
		log.Fatal(err)
	}
	p, err := u.GuestConnection().CreateProcess(ctx, &protocol.ProcessParameters{
		CommandArgs:      []string{"cat", share.GuestPath() + "/note"},
		CreateStdOutPipe: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	io.Copy(os.Stdout, p.Stdout())
	p.Wait()
	if err := share.Release(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: written on the host
}
