package main

import (
	"context"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/transport"
)

// reached is an agent a verb reached, and how to let go of it.
type reached struct {
	gc    *host.GuestConnection
	u     *uvm.UVM // the VM's owner, when the verb reached a named VM on Linux
	close func()
}

// reach returns a negotiated connection: from an agent started here (host
// mode, with guest), from the long-lived VM named uvmName, or from one
// that dials the socket directory dir.
func reach(ctx context.Context, dir, uvmName, guest string) (*reached, error) {
	switch {
	case guest != "":
		return startHostMode(ctx, guest, dir)
	case uvmName != "":
		return reachUVM(ctx, uvmName)
	}
	return accept(ctx, transport.Unix{Dir: dir})
}

// accept takes the agent's next connection on ports.
func accept(ctx context.Context, ports transport.Listener) (*reached, error) {
	l, err := ports.Listen(transport.BridgePort)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	gc, err := host.Accept(ctx, l, nil, host.Config{IO: ports})
	if err != nil {
		return nil, err
	}
	return &reached{gc: gc, close: func() { gc.Close() }}, nil
}
