package reverse

import (
	"slices"
	"testing"

	"github.com/uvmgcs/gcs/protocol"
)

func TestNegotiate(t *testing.T) {
	gc := startGuest(t).connect(t)
	caps := gc.Capabilities()
	t.Logf("capabilities %+v", caps)
	if gc.Version() != protocol.ProtocolVersion || caps.RuntimeOsType != "Linux" {
		t.Fatalf("version %d, capabilities %+v", gc.Version(), caps)
	}
	if !slices.Contains(caps.SupportedSchemaVersions, protocol.SchemaVersion{Major: 2, Minor: 1}) {
		t.Errorf("schema 2.1 not offered: %+v", caps.SupportedSchemaVersions)
	}
	g := caps.GuestDefinedCapabilities
	if !g.SignalProcessSupported || !g.DumpStacksSupported || !g.DeleteContainerStateSupported || g.UvmgcsPauseResumeSupported {
		t.Errorf("guest-defined capabilities %+v", g)
	}
}
