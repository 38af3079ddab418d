package bridge

import "github.com/uvmgcs/gcs/protocol"

// LinuxCapabilities is what a Linux guest answers to NegotiateProtocol:
// hcsshim's Linux GCS set, plus pauseResume when the Pause and Resume
// extensions are served.
func LinuxCapabilities(pauseResume bool) protocol.Capabilities {
	return protocol.Capabilities{
		SupportedSchemaVersions: []protocol.SchemaVersion{{Major: 2, Minor: 1}},
		RuntimeOsType:           "Linux",
		GuestDefinedCapabilities: protocol.GuestDefinedCapabilities{
			NamespaceAddRequestSupported:  true,
			SignalProcessSupported:        true,
			DumpStacksSupported:           true,
			DeleteContainerStateSupported: true,
			UvmgcsPauseResumeSupported:    pauseResume,
		},
	}
}
