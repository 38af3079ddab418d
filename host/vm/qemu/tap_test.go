//go:build linux

package qemu

import (
	"net"
	"slices"
	"testing"
)

func TestParseInfoNetwork(t *testing.T) {
	out := "tap-0a580a630002-dev: index=0,type=nic,model=virtio-net-pci,macaddr=0a:58:0a:63:00:02\r\n" +
		" \\ tap-0a580a630002: index=0,type=tap,fd=25\r\n" +
		"net0: index=0,type=user,net=10.0.2.0,restrict=on\r\n" +
		"hub 0\r\n"
	if got, want := parseInfoNetwork(out), []string{"tap-0a580a630002", "net0"}; !slices.Equal(got, want) {
		t.Errorf("parseInfoNetwork = %q, want %q", got, want)
	}
	if got := parseInfoNetwork(""); len(got) != 0 {
		t.Errorf("no network: %q", got)
	}
}

func TestTapIDs(t *testing.T) {
	mac, _ := net.ParseMAC("0A:58:0a:63:00:02")
	if n, d := tapIDs(mac); n != "tap-0a580a630002" || d != "tap-0a580a630002-dev" {
		t.Errorf("tapIDs = %q, %q", n, d)
	}
}
