//go:build windows

package transport

import (
	"testing"

	"github.com/Microsoft/go-winio"
)

// The mapping agrees with go-winio's own for the ports the bridge uses.
func TestHvsockServiceIDMatchesWinio(t *testing.T) {
	for _, port := range []uint32{0, BridgePort, FirstStdioPort, 0xFFFFFFFF} {
		if got, want := HvsockServiceID(port), winio.VsockServiceID(port); got != want {
			t.Errorf("HvsockServiceID(%#x) = %s, winio says %s", port, got, want)
		}
	}
}
