package main

import (
	"context"
	"errors"
)

// startHostMode fails: host mode runs the Linux agent on this host
// (host/hostmode: namespaces, mounts), so it needs a Linux host.
func startHostMode(context.Context, string, string) (*reached, error) {
	return nil, errors.New("exec --guest: host mode runs the gcs agent on this host and needs Linux; use --vm or --uvm NAME")
}
