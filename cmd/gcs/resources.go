package main

import (
	"context"

	"github.com/uvmgcs/gcs/guest/bridge"
	"github.com/uvmgcs/gcs/protocol"
)

// resources serves ModifySettings on the utility VM: network adapters and
// namespaces go to the network manager, everything else to storage.
type resources struct {
	network bridge.Resources
	storage bridge.Resources
}

func (r resources) Modify(ctx context.Context, req protocol.ModificationRequest) error {
	switch req.ResourceType {
	case protocol.ResourceNetwork, protocol.ResourceNetworkNamespace:
		return r.network.Modify(ctx, req)
	}
	return r.storage.Modify(ctx, req)
}
