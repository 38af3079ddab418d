package protocol

import specs "github.com/opencontainers/runtime-spec/specs-go"

// Resource types a ModificationRequest names.
const (
	ResourceMappedVirtualDisk = "MappedVirtualDisk"
	ResourceSCSIDevice        = "SCSIDevice"
	ResourceVPMemDevice       = "VPMemDevice"
	ResourceCombinedLayers    = "CombinedLayers"
	ResourceMappedDirectory   = "MappedDirectory"
	ResourceNetwork           = "Network"
	// ResourceNetworkNamespace creates or deletes a network namespace by
	// itself (settings {"ID": NamespaceID}); hcsshim sends it to a guest
	// announcing NamespaceAddRequestSupported.
	ResourceNetworkNamespace     = "NetworkNamespace"
	ResourceContainerConstraints = "ContainerConstraints"
	ResourceSecurityPolicy       = "SecurityPolicy"
)

// NetworkNamespace is the settings of a NetworkNamespace request.
type NetworkNamespace struct {
	ID string `json:",omitempty"`
}

// VerityInfo describes a dm-verity hash tree appended to a filesystem image.
type VerityInfo struct {
	Ext4SizeInBytes int64  `json:",omitempty"`
	Version         int    `json:",omitempty"`
	Algorithm       string `json:",omitempty"`
	SuperBlock      bool   `json:",omitempty"`
	RootDigest      string `json:",omitempty"`
	Salt            string `json:",omitempty"`
	BlockSize       int    `json:",omitempty"`
}

// MappedVirtualDisk is a SCSI disk to mount (or link, with BlockDev).
type MappedVirtualDisk struct {
	MountPath        string      `json:",omitempty"`
	Lun              uint8       `json:",omitempty"`
	Controller       uint8       `json:",omitempty"`
	Partition        uint64      `json:",omitempty"`
	ReadOnly         bool        `json:",omitempty"`
	Encrypted        bool        `json:",omitempty"`
	Options          []string    `json:",omitempty"`
	VerityInfo       *VerityInfo `json:",omitempty"`
	EnsureFilesystem bool        `json:",omitempty"`
	Filesystem       string      `json:",omitempty"`
	BlockDev         bool        `json:",omitempty"`
}

// SCSIDevice names a SCSI device the guest must let go of (Remove).
type SCSIDevice struct {
	Controller uint8 `json:",omitempty"`
	Lun        uint8 `json:",omitempty"`
}

// VPMemMappingInfo is a slice of a VPMem device holding one layer.
type VPMemMappingInfo struct {
	DeviceOffsetInBytes uint64 `json:",omitempty"`
	DeviceSizeInBytes   uint64 `json:",omitempty"`
}

// VPMemDevice is a /dev/pmem<N> layer to mount read-only.
type VPMemDevice struct {
	DeviceNumber uint32            `json:",omitempty"`
	MountPath    string            `json:",omitempty"`
	MappingInfo  *VPMemMappingInfo `json:",omitempty"`
	VerityInfo   *VerityInfo       `json:",omitempty"`
}

// Layer is one overlay lower layer.
type Layer struct {
	ID       string `json:"Id,omitempty"`
	Path     string `json:",omitempty"`
	PathType string `json:",omitempty"`
}

// CombinedLayers is an overlay root filesystem (note ContainerID's capital D).
type CombinedLayers struct {
	ContainerID       string  `json:"ContainerID,omitempty"`
	ContainerRootPath string  `json:",omitempty"`
	Layers            []Layer `json:",omitempty"`
	ScratchPath       string  `json:",omitempty"`
}

// MappedDirectory is a host directory shared over 9p.
type MappedDirectory struct {
	MountPath string `json:",omitempty"`
	Port      uint32 `json:",omitempty"`
	ShareName string `json:",omitempty"`
	ReadOnly  bool   `json:",omitempty"`
}

// IPConfig is one adapter address.
type IPConfig struct {
	IPAddress    string `json:",omitempty"`
	PrefixLength uint8  `json:",omitempty"`
}

// Route is one adapter route.
type Route struct {
	NextHop           string `json:",omitempty"`
	DestinationPrefix string `json:",omitempty"`
	Metric            uint16 `json:",omitempty"`
}

// NetworkAdapter is a NIC to move into a pod's network namespace.
type NetworkAdapter struct {
	NamespaceID        string     `json:",omitempty"`
	ID                 string     `json:",omitempty"`
	MacAddress         string     `json:",omitempty"`
	DNSSuffix          string     `json:",omitempty"`
	DNSServerList      string     `json:",omitempty"`
	EnableLowMetric    bool       `json:",omitempty"`
	EncapOverhead      uint16     `json:",omitempty"`
	IPConfigs          []IPConfig `json:",omitempty"`
	Routes             []Route    `json:",omitempty"`
	PolicyBasedRouting bool       `json:",omitempty"`
}

// ContainerConstraints updates a running container's resources.
type ContainerConstraints struct {
	Linux *specs.LinuxResources `json:",omitempty"`
}

// SecurityPolicy installs a policy later requests are checked against.
type SecurityPolicy struct {
	EnforcerType          string `json:",omitempty"`
	EncodedSecurityPolicy string `json:",omitempty"`
	EncodedUVMReference   string `json:",omitempty"`
}
