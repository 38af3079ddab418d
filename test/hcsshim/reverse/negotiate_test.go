package reverse

import "testing"

func TestNegotiate(t *testing.T) {
	g := startGuest(t)
	gc := g.connect(t)
	caps := gc.Capabilities()
	if gc.Version() != 4 || caps.RuntimeOsType != "Linux" {
		t.Fatalf("version %d, capabilities %+v", gc.Version(), caps)
	}
	t.Logf("capabilities %+v", caps)
}
