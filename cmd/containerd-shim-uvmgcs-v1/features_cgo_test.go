//go:build cgo

package main

import (
	"slices"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"
)

// The features the shim reports are the guest's libcontainer's.
func TestGuestFeaturesAreLibcontainers(t *testing.T) {
	if got, want := guestMountOptions, specconv.KnownMountOptions(); !slices.Equal(got, want) {
		t.Errorf("mount options %q, libcontainer knows %q", got, want)
	}
	if got, want := guestNamespaces, specconv.KnownNamespaces(); !slices.Equal(got, want) {
		t.Errorf("namespaces %q, libcontainer knows %q", got, want)
	}
}
