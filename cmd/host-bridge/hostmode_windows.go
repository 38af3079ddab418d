package main

import (
	"context"
	"errors"

	"github.com/uvmgcs/gcs/host"
)

// startHostMode fails: host mode runs the Linux agent on this host
// (host/hostmode: namespaces, mounts), so it needs a Linux host.
func startHostMode(context.Context, string, string) (*host.GuestConnection, func(), error) {
	return nil, nil, errors.New("exec --guest: host mode runs the gcs agent on this host and needs Linux; use --vm or --uvm NAME")
}
