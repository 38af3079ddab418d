// Package uvm owns a running utility VM as the host sees it: the machine a
// VM driver booted, the multiplexed channel to its agent, and the
// negotiated GuestConnection over it. Start returns once the agent has
// negotiated; Close shuts the machine down.
package uvm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// Machine is what a UVM needs of a VM driver (host/vm's VM satisfies it).
type Machine interface {
	// Start boots the machine; the agent channel is connected on return.
	Start(ctx context.Context) error
	// AgentConn is the host end of the channel the agent multiplexes
	// its ports over.
	AgentConn() net.Conn
	Shutdown(ctx context.Context) error
	Done() <-chan struct{}
}

// UVM is a booted utility VM with a negotiated agent.
type UVM struct {
	m   Machine
	mux *transport.MuxHost
	gc  *host.GuestConnection

	// Timings of the boot.
	Booted     time.Duration // Start: machine launched and channel connected
	Negotiated time.Duration // Start until the agent negotiated
}

// Start boots m and waits for its agent to connect and negotiate.
func Start(ctx context.Context, m Machine, cfg host.Config) (_ *UVM, retErr error) {
	t0 := time.Now()
	if err := m.Start(ctx); err != nil {
		return nil, fmt.Errorf("start VM: %w", err)
	}
	u := &UVM{m: m, Booted: time.Since(t0)}
	defer func() {
		if retErr != nil {
			u.Close(context.WithoutCancel(ctx))
		}
	}()
	// A machine with sockets of its own (hvsocket under HCS) listens on
	// them; otherwise every port is multiplexed over its agent channel.
	var io transport.Listener
	if lm, ok := m.(interface{ Listener() transport.Listener }); ok && lm.Listener() != nil {
		io = lm.Listener()
	} else {
		mux, err := transport.NewMuxHost(m.AgentConn())
		if err != nil {
			return nil, err
		}
		u.mux, io = mux, mux
	}
	l, err := io.Listen(transport.BridgePort)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	conn, err := accept(ctx, l, m.Done())
	if err != nil {
		return nil, err
	}
	cfg.IO = io
	gc, err := host.Connect(ctx, conn, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	u.gc = gc
	u.Negotiated = time.Since(t0)
	log.G(ctx).WithFields(map[string]any{"booted": u.Booted, "negotiated": u.Negotiated}).Debug("utility VM ready")
	return u, nil
}

// accept waits for the agent's bridge stream, failing early when the
// machine stops or ctx ends.
func accept(ctx context.Context, l net.Listener, dead <-chan struct{}) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-dead:
		return nil, errors.New("the VM stopped before its agent connected")
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the agent: %w", ctx.Err())
	}
}

// GuestConnection is the negotiated connection to the agent.
func (u *UVM) GuestConnection() *host.GuestConnection { return u.gc }

// Machine is the VM driver's handle (disk hot-plug and the like).
func (u *UVM) Machine() Machine { return u.m }

// Close asks the agent to power the VM off, then has the driver make sure
// it is gone. It is safe to call more than once.
func (u *UVM) Close(ctx context.Context) error {
	if u.gc != nil {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = u.gc.RPC(sctx, protocol.ShutdownForced, &protocol.RequestBase{ContainerID: protocol.UVMContainerID}, nil)
		cancel()
		u.gc.Close()
	}
	if u.mux != nil {
		u.mux.Close()
	}
	return u.m.Shutdown(ctx)
}
