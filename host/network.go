package host

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/uvmgcs/gcs/protocol"
)

// modifyNetwork sends a ModifySettings of resource on the utility VM.
func (gc *GuestConnection) modifyNetwork(ctx context.Context, resource, op string, settings any) error {
	b, err := json.Marshal(settings)
	if err != nil {
		return fmt.Errorf("%s settings: %w", resource, err)
	}
	return gc.Modify(ctx, protocol.UVMContainerID, protocol.ModificationRequest{
		ResourceType: resource,
		RequestType:  op,
		Settings:     b,
	})
}

// AddNetworkAdapter has the guest move the interface with a.MacAddress
// into the network namespace a.NamespaceID (created if it does not exist)
// and configure its MTU, addresses (DHCP when a has none), routes and DNS.
func (gc *GuestConnection) AddNetworkAdapter(ctx context.Context, a protocol.NetworkAdapter) error {
	return gc.modifyNetwork(ctx, protocol.ResourceNetwork, protocol.RequestTypeAdd, a)
}

// RemoveNetworkAdapter has the guest return the adapter a names (by ID,
// else MacAddress) from namespace a.NamespaceID to its root namespace; the
// namespace goes with its last adapter unless a container still uses it.
func (gc *GuestConnection) RemoveNetworkAdapter(ctx context.Context, a protocol.NetworkAdapter) error {
	return gc.modifyNetwork(ctx, protocol.ResourceNetwork, protocol.RequestTypeRemove, a)
}

// AddNetworkNamespace has the guest create network namespace id (a GUID)
// unless it exists.
func (gc *GuestConnection) AddNetworkNamespace(ctx context.Context, id string) error {
	return gc.modifyNetwork(ctx, protocol.ResourceNetworkNamespace, protocol.RequestTypeAdd, struct{ ID string }{id})
}

// RemoveNetworkNamespace has the guest delete network namespace id; it
// fails with HrVmcomputeInvalidState while adapters remain in it.
func (gc *GuestConnection) RemoveNetworkNamespace(ctx context.Context, id string) error {
	return gc.modifyNetwork(ctx, protocol.ResourceNetworkNamespace, protocol.RequestTypeRemove, struct{ ID string }{id})
}
