package hcs

// The HCS schema 2.x documents the driver sends: only the fields it sets,
// with HCS's JSON names. HCS ignores what a document leaves out, so a zero
// field is omitted.

// SchemaVersion is the version of the schema a document is written in.
type SchemaVersion struct {
	Major uint32 `json:"Major"`
	Minor uint32 `json:"Minor"`
}

// ComputeSystem is the document HcsCreateComputeSystem takes.
type ComputeSystem struct {
	Owner                             string          `json:"Owner,omitempty"`
	SchemaVersion                     *SchemaVersion  `json:"SchemaVersion,omitempty"`
	VirtualMachine                    *VirtualMachine `json:"VirtualMachine,omitempty"`
	ShouldTerminateOnLastHandleClosed bool            `json:"ShouldTerminateOnLastHandleClosed,omitempty"`
}

// VirtualMachine configures the VM a ComputeSystem is.
type VirtualMachine struct {
	StopOnReset     bool      `json:"StopOnReset,omitempty"` // a guest reboot stops the VM
	Chipset         *Chipset  `json:"Chipset,omitempty"`
	ComputeTopology *Topology `json:"ComputeTopology,omitempty"`
	Devices         *Devices  `json:"Devices,omitempty"`
}

// Chipset says how the VM boots.
type Chipset struct {
	LinuxKernelDirect *LinuxKernelDirect `json:"LinuxKernelDirect,omitempty"`
}

// LinuxKernelDirect boots a Linux kernel and initrd from host files, with
// no firmware in between.
type LinuxKernelDirect struct {
	KernelFilePath string `json:"KernelFilePath,omitempty"`
	InitRdPath     string `json:"InitRdPath,omitempty"`
	KernelCmdLine  string `json:"KernelCmdLine,omitempty"`
}

// Topology is the VM's memory and processors.
type Topology struct {
	Memory    *Memory    `json:"Memory,omitempty"`
	Processor *Processor `json:"Processor,omitempty"`
}

// Memory is the VM's RAM. AllowOvercommit backs it by the pagefile instead
// of committing it all at start.
type Memory struct {
	SizeInMB        uint64 `json:"SizeInMB,omitempty"`
	AllowOvercommit bool   `json:"AllowOvercommit,omitempty"`
}

// Processor is the VM's virtual processors.
type Processor struct {
	Count uint32 `json:"Count,omitempty"`
}

// Devices is the VM's virtual hardware.
type Devices struct {
	// ComPorts maps a COM port number ("0" is ttyS0 in the guest) to the
	// host named pipe it is connected to.
	ComPorts map[string]ComPort `json:"ComPorts,omitempty"`
	// Scsi maps a controller's name to the controller; see scsiKey.
	Scsi        map[string]Scsi        `json:"Scsi,omitempty"`
	VirtualPMem *VirtualPMemController `json:"VirtualPMem,omitempty"`
	HvSocket    *HvSocket              `json:"HvSocket,omitempty"`
}

// ComPort connects a serial port to a named pipe HCS opens as a client.
type ComPort struct {
	NamedPipe string `json:"NamedPipe,omitempty"`
}

// Scsi is one synthetic SCSI controller; Attachments maps a LUN ("0".."63")
// to the disk there.
type Scsi struct {
	Attachments map[string]Attachment `json:"Attachments"`
}

// Attachment types.
const (
	AttachmentVirtualDisk = "VirtualDisk" // a VHD or VHDX file
)

// Attachment is a disk on a SCSI controller.
type Attachment struct {
	Type     string `json:"Type,omitempty"`
	Path     string `json:"Path,omitempty"`
	ReadOnly bool   `json:"ReadOnly,omitempty"`
}

// VirtualPMem image formats.
const (
	ImageFormatVhd1 = "Vhd1" // a fixed VHD: the raw image with a VHD footer
)

// VirtualPMemController holds the VM's virtual persistent memory devices.
// HCS adds empty devices up to MaximumCount at create, so that devices can
// be hot-added later; Devices maps a device number to its backing.
type VirtualPMemController struct {
	Devices      map[string]VirtualPMemDevice `json:"Devices"`
	MaximumCount uint8                        `json:"MaximumCount,omitempty"`
}

// VirtualPMemDevice is one persistent memory device backed by a host file;
// the guest sees device n as /dev/pmem<n>.
type VirtualPMemDevice struct {
	HostPath    string `json:"HostPath,omitempty"`
	ReadOnly    bool   `json:"ReadOnly,omitempty"`
	ImageFormat string `json:"ImageFormat,omitempty"`
}

// HvSocket configures the VM's Hyper-V sockets.
type HvSocket struct {
	HvSocketConfig *HvSocketSystemConfig `json:"HvSocketConfig,omitempty"`
}

// HvSocketSystemConfig says who on the host may bind to (listen on) and
// connect to the VM's hvsocket services, as SDDL strings; ServiceTable
// overrides that per service ID.
type HvSocketSystemConfig struct {
	DefaultBindSecurityDescriptor    string                           `json:"DefaultBindSecurityDescriptor,omitempty"`
	DefaultConnectSecurityDescriptor string                           `json:"DefaultConnectSecurityDescriptor,omitempty"`
	ServiceTable                     map[string]HvSocketServiceConfig `json:"ServiceTable,omitempty"`
}

// HvSocketServiceConfig is one service's entry in a ServiceTable.
type HvSocketServiceConfig struct {
	BindSecurityDescriptor    string `json:"BindSecurityDescriptor,omitempty"`
	ConnectSecurityDescriptor string `json:"ConnectSecurityDescriptor,omitempty"`
	AllowWildcardBinds        bool   `json:"AllowWildcardBinds,omitempty"`
}

// Modify request types.
const (
	RequestAdd    = "Add"
	RequestRemove = "Remove"
)

// ModifySettingRequest is the document HcsModifyComputeSystem takes: what
// to change (ResourcePath), how, and the resource's settings for an Add.
type ModifySettingRequest struct {
	ResourcePath string `json:"ResourcePath"`
	RequestType  string `json:"RequestType"`
	Settings     any    `json:"Settings,omitempty"`
}

// SystemExitStatus is the document of a SystemExited notification.
type SystemExitStatus struct {
	Status   int32  `json:"Status"`
	ExitType string `json:"ExitType,omitempty"` // GracefulExit, ForcedExit, UnexpectedExit, Unknown
}

// properties is the part of HcsGetComputeSystemProperties' answer to an
// empty query that the driver reads: the VM's runtime ID, which hvsocket
// addresses it by.
type properties struct {
	RuntimeID string `json:"RuntimeId"`
}
