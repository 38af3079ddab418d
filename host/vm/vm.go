// Package vm owns the utility VM's lifecycle contract: what a VM is
// configured with, the order its methods may be called in, and what each
// promises, including the channel its agent is reached over. Hypervisor
// drivers (vm/qemu, vm/hcs) implement VM and take what only they know
// (accelerator, boot-time shares, NIC backends) in Options of their own;
// callers and tests take the interface.
//
// The lifecycle is strict: fill a Config, construct a VM with a driver's
// New, Start it (it returns once the hypervisor runs and the agent channel
// is connected), hot-add and remove devices, then Shutdown. Shutdown may be
// called at any time, any number of times.
package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/uvmgcs/gcs/transport"
)

// Defaults for the zero values of Config.
const (
	DefaultMemoryMiB = 512
	DefaultCPUs      = 1
)

// ErrNotRunning is returned by a method that needs a running VM when Start
// has not succeeded or the VM has stopped.
var ErrNotRunning = errors.New("vm is not running")

// Config is everything a VM is created with.
type Config struct {
	Kernel, Initrd string    // required; a missing file is a clear error from Start
	KernelArgs     string    // appended to the driver's tuned base command line
	MemoryMiB      int       // default DefaultMemoryMiB
	CPUs           int       // default DefaultCPUs
	StateDir       string    // sockets, console log; created by Start, removed by Shutdown; a temporary directory if empty
	ConsoleLog     io.Writer // optional copy of the serial console, written line by line
}

// WithDefaults returns c with its zero values filled in.
func (c Config) WithDefaults() Config {
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if c.CPUs == 0 {
		c.CPUs = DefaultCPUs
	}
	return c
}

// Validate reports the first thing wrong with c, naming the field or file.
func (c Config) Validate() error {
	for _, f := range []struct{ field, path string }{{"Kernel", c.Kernel}, {"Initrd", c.Initrd}} {
		if f.path == "" {
			return fmt.Errorf("vm config: %s is required", f.field)
		}
		st, err := os.Stat(f.path)
		if err != nil {
			return fmt.Errorf("vm config: %s: %w", f.field, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("vm config: %s %s is not a regular file", f.field, f.path)
		}
	}
	if c.MemoryMiB < 0 || c.CPUs < 0 {
		return fmt.Errorf("vm config: MemoryMiB %d and CPUs %d must not be negative", c.MemoryMiB, c.CPUs)
	}
	return nil
}

// BootReleaser is a VM that can give back, once the guest has booted,
// host memory only the boot used: QEMU keeps its copies of the kernel and
// initrd for a reset a utility VM never makes, and the data its own
// start-up read (relocation and symbol tables). host/uvm calls it when the
// agent has negotiated; an error is only worth a log line.
type BootReleaser interface {
	ReleaseBootFiles() error
}

// Disk names a hot-added SCSI disk by its place on the VM's SCSI bus; the
// guest sees it at /sys/bus/scsi/devices/<Controller>:0:0:<LUN>.
type Disk struct {
	Controller, LUN uint8
}

// VM is one utility VM.
type VM interface {
	// Start launches the VM and returns once the hypervisor runs and the
	// agent channel is connected. ctx bounds the start only: cancelling it
	// during Start stops and reaps the hypervisor; cancelling it after
	// Start returns does nothing. Start may be called once.
	Start(ctx context.Context) error

	// Agent listens on the ports the guest's agent dials: the bridge
	// (transport.BridgePort) and every stdio port. QEMU multiplexes them
	// over its virtio-serial channel, HCS carries them as hvsockets. Valid
	// after Start; Shutdown closes what it listens with.
	Agent() transport.Listener

	// AddSCSIDisk hot-adds the file at path as a disk at the next free LUN
	// on controller 0.
	AddSCSIDisk(ctx context.Context, path string, readOnly bool) (Disk, error)

	// RemoveSCSIDisk hot-removes d and waits until the hypervisor has let
	// go of it. Removing a disk that is not there is not an error.
	RemoveSCSIDisk(ctx context.Context, d Disk) error

	// AddPMem hot-adds the file at path as a virtio-pmem device, read-only
	// where the hypervisor allows, and returns its number (0, 1, ...).
	AddPMem(ctx context.Context, path string) (deviceNumber uint32, err error)

	// Shutdown asks the VM to stop, kills it when ctx ends or a grace
	// period passes, always reaps it, and removes StateDir. It is
	// idempotent and may be called before Start.
	Shutdown(ctx context.Context) error

	// Wait blocks until the VM has exited and returns how it exited.
	Wait() error

	// Done is closed when the VM has exited (or was shut down before Start).
	Done() <-chan struct{}
}
