package host

import (
	"context"
	"fmt"
	"net"
)

// Accept takes the agent's next bridge connection on l (a listener on
// transport.BridgePort of cfg.IO's transport) and negotiates on it. It
// fails early, closing l, when dead closes (the VM or agent process
// stopped) or ctx ends. Every way of reaching an agent (a VM's driver,
// a host-mode agent, a long-lived VM's relay) accepts through it.
func Accept(ctx context.Context, l net.Listener, dead <-chan struct{}, cfg Config) (*GuestConnection, error) {
	conn, err := AcceptConn(ctx, l, dead)
	if err != nil {
		return nil, err
	}
	gc, err := Connect(ctx, conn, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return gc, nil
}

// AcceptConn is Accept without the negotiation: the raw bridge connection
// (for tests that speak frames themselves).
func AcceptConn(ctx context.Context, l net.Listener, dead <-chan struct{}) (net.Conn, error) {
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
		if r.err != nil {
			return nil, Classify(fmt.Errorf("accept the agent: %w", r.err))
		}
		return r.c, nil
	case <-dead:
		l.Close()
		return nil, Classify(fmt.Errorf("the agent stopped before it connected: %w", net.ErrClosed))
	case <-ctx.Done():
		l.Close()
		return nil, fmt.Errorf("waiting for the agent to connect: %w", ctx.Err())
	}
}
