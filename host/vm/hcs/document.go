package hcs

import (
	"fmt"
	"github.com/uvmgcs/gcs/protocol"
	"strconv"
	"strings"

	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/transport"
)

// Defaults and bounds for Options.
const (
	DefaultOwner           = "uvmgcs"
	DefaultSCSIControllers = 1
	MaxSCSIControllers     = 4
	DefaultVPMemDevices    = 8
	MaxVPMemDevices        = 128
	lunsPerController      = 64 // Hyper-V's synthetic SCSI controller
)

// baseKernelArgs is the command line every HCS VM boots with: no PCI bus
// (every device is on VMBus), no RAM disks, no ACPI PM timer, and reboot on
// panic, which StopOnReset turns into a stop.
const baseKernelArgs = "panic=-1 quiet pci=off brd.rd_nr=0 pmtmr=0"

// agentKernelArgs starts the agent on vsock, which Hyper-V carries as
// hvsocket: the guest dials AF_VSOCK ports, the host listens with
// transport.HvSock.
const agentKernelArgs = "gcs.transport=vsock"

// bindSDDL lets SYSTEM and the Administrators group bind to and connect to
// the VM's hvsocket services: the host process must run elevated.
const bindSDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)"

// Options are the HCS settings of a VM beyond vm.Config; the zero value is
// usable.
type Options struct {
	// ID is the compute system's name, unique on the host; a new GUID if
	// empty.
	ID string
	// Owner is shown by hcsdiag list; DefaultOwner if empty.
	Owner string
	// SCSIControllers is how many SCSI controllers the VM gets, 1 to
	// MaxSCSIControllers (DefaultSCSIControllers if 0). Disks are added to
	// controller 0; more controllers are for callers that place disks
	// themselves.
	SCSIControllers int
	// VPMemDevices is how many VPMem devices can be hot-added, up to
	// MaxVPMemDevices (DefaultVPMemDevices if 0, none if negative).
	VPMemDevices int
	// ConsolePipe, when set, is a named pipe (\\.\pipe\<name>) the caller
	// serves; HCS connects ttyS0 to it and the kernel logs there.
	// Otherwise the VM has no serial port at all, which boots faster.
	ConsolePipe string
}

func (o Options) withDefaults() Options {
	if o.Owner == "" {
		o.Owner = DefaultOwner
	}
	if o.SCSIControllers == 0 {
		o.SCSIControllers = DefaultSCSIControllers
	}
	if o.VPMemDevices == 0 {
		o.VPMemDevices = DefaultVPMemDevices
	}
	if o.VPMemDevices < 0 {
		o.VPMemDevices = 0
	}
	return o
}

func (o Options) validate() error {
	if o.SCSIControllers < 1 || o.SCSIControllers > MaxSCSIControllers {
		return fmt.Errorf("hcs options: SCSIControllers %d is not 1 to %d", o.SCSIControllers, MaxSCSIControllers)
	}
	if o.VPMemDevices > MaxVPMemDevices {
		return fmt.Errorf("hcs options: VPMemDevices %d is more than %d", o.VPMemDevices, MaxVPMemDevices)
	}
	return nil
}

// scsiKey is the Devices.Scsi key of controller index n, the index the
// guest protocol's MappedVirtualDisk.Controller and vm.Disk.Controller
// carry: the controller's VMBus instance ID from
// protocol.HyperVSCSIControllerGUID, which HCS uses as is for a GUID key,
// so the guest finds controller n at /sys/bus/vmbus/devices/<that ID>.
// Resource paths name the controller by the same key.
func scsiKey(n uint8) string {
	if g, ok := protocol.HyperVSCSIControllerGUID(n); ok {
		return g
	}
	return strconv.Itoa(int(n))
}

// kernelCmdLine is the VM's command line: the base, the console, the
// agent's transport, then cfg.KernelArgs (which can override them: the
// last gcs.<name> wins).
func kernelCmdLine(cfg vm.Config, o Options) string {
	args := []string{baseKernelArgs}
	if o.ConsolePipe != "" {
		args = append(args, "console=ttyS0,115200")
	} else {
		args = append(args, "8250_core.nr_uarts=0")
	}
	args = append(args, agentKernelArgs)
	if cfg.KernelArgs != "" {
		args = append(args, cfg.KernelArgs)
	}
	return strings.Join(args, " ")
}

// uvmDocument is the compute system document for a utility VM booting
// cfg's kernel and initrd. It reads no files: Start validates cfg first.
func uvmDocument(cfg vm.Config, o Options) *ComputeSystem {
	cfg, o = cfg.WithDefaults(), o.withDefaults()
	devices := &Devices{
		Scsi: make(map[string]Scsi, o.SCSIControllers),
		HvSocket: &HvSocket{HvSocketConfig: &HvSocketSystemConfig{
			DefaultBindSecurityDescriptor:    bindSDDL,
			DefaultConnectSecurityDescriptor: bindSDDL,
			ServiceTable: map[string]HvSocketServiceConfig{
				transport.HvsockServiceID(transport.BridgePort).String(): {BindSecurityDescriptor: bindSDDL},
			},
		}},
	}
	for i := range o.SCSIControllers {
		devices.Scsi[scsiKey(uint8(i))] = Scsi{Attachments: map[string]Attachment{}}
	}
	if o.VPMemDevices > 0 {
		devices.VirtualPMem = &VirtualPMemController{
			Devices:      map[string]VirtualPMemDevice{},
			MaximumCount: uint8(o.VPMemDevices),
		}
	}
	if o.ConsolePipe != "" {
		devices.ComPorts = map[string]ComPort{"0": {NamedPipe: o.ConsolePipe}}
	}
	return &ComputeSystem{
		Owner:                             o.Owner,
		SchemaVersion:                     &SchemaVersion{Major: 2, Minor: 1},
		ShouldTerminateOnLastHandleClosed: true, // no VM outlives a crashed host process
		VirtualMachine: &VirtualMachine{
			StopOnReset: true,
			Chipset: &Chipset{LinuxKernelDirect: &LinuxKernelDirect{
				KernelFilePath: cfg.Kernel,
				InitRdPath:     cfg.Initrd,
				KernelCmdLine:  kernelCmdLine(cfg, o),
			}},
			ComputeTopology: &Topology{
				Memory:    &Memory{SizeInMB: uint64(cfg.MemoryMiB), AllowOvercommit: true},
				Processor: &Processor{Count: uint32(cfg.CPUs)},
			},
			Devices: devices,
		},
	}
}

// scsiPath is the resource path of a LUN on a controller.
func scsiPath(d vm.Disk) string {
	return fmt.Sprintf("VirtualMachine/Devices/Scsi/%s/Attachments/%d", scsiKey(d.Controller), d.LUN)
}

// addSCSIRequest attaches the VHD or VHDX at path as d.
func addSCSIRequest(d vm.Disk, path string, readOnly bool) *ModifySettingRequest {
	return &ModifySettingRequest{
		ResourcePath: scsiPath(d),
		RequestType:  RequestAdd,
		Settings:     &Attachment{Type: AttachmentVirtualDisk, Path: path, ReadOnly: readOnly},
	}
}

// removeSCSIRequest detaches d.
func removeSCSIRequest(d vm.Disk) *ModifySettingRequest {
	return &ModifySettingRequest{ResourcePath: scsiPath(d), RequestType: RequestRemove}
}

// addVPMemRequest backs VPMem device n with the fixed VHD at path,
// read-only.
func addVPMemRequest(n uint32, path string) *ModifySettingRequest {
	return &ModifySettingRequest{
		ResourcePath: fmt.Sprintf("VirtualMachine/Devices/VirtualPMem/Devices/%d", n),
		RequestType:  RequestAdd,
		Settings:     &VirtualPMemDevice{HostPath: path, ReadOnly: true, ImageFormat: ImageFormatVhd1},
	}
}
