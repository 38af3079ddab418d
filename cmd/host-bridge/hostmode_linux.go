package main

import (
	"context"
	"time"

	"github.com/uvmgcs/gcs/host/hostmode"
)

// startHostMode starts the gcs binary guest on this host in a private
// mount namespace (host mode), its sockets in dir, and connects to it.
func startHostMode(ctx context.Context, guest, dir string) (*reached, error) {
	a, err := hostmode.Start(ctx, hostmode.Config{Binary: guest, Dir: dir, Stderr: agentLog()})
	if err != nil {
		return nil, err
	}
	gc, err := a.Connect(ctx)
	if err != nil {
		a.Close(time.Second)
		return nil, err
	}
	return &reached{gc: gc, close: func() { gc.Close(); a.Close(5 * time.Second) }}, nil
}
