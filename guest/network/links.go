package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/uvmgcs/gcs/internal/log"
)

// LinkSource is how the Manager finds interfaces in the root namespace.
type LinkSource interface {
	// LinkList lists the interfaces.
	LinkList() ([]netlink.Link, error)
	// Subscribe returns a channel that receives a value after interfaces
	// change; it is closed when ctx ends or the subscription fails.
	Subscribe(ctx context.Context) (<-chan struct{}, error)
}

// rescanInterval is how often the wait for an interface lists interfaces
// again without an update, in case one was lost.
const rescanInterval = time.Second

// netlinkLinks is LinkSource over netlink in namespace ns.
type netlinkLinks struct {
	h  *netlink.Handle
	ns netns.NsHandle
}

func (l netlinkLinks) LinkList() ([]netlink.Link, error) {
	return linkList(l.h)
}

func (l netlinkLinks) Subscribe(ctx context.Context) (<-chan struct{}, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	ns := l.ns
	err := netlink.LinkSubscribeWithOptions(updates, ctx.Done(), netlink.LinkSubscribeOptions{
		Namespace:     &ns,
		ErrorCallback: func(err error) { log.G(ctx).WithError(err).Debug("network: link updates") },
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to link updates: %w", err)
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for range updates {
			select {
			case out <- struct{}{}:
			default: // one pending wake-up is enough
			}
		}
	}()
	return out, nil
}

// linkList lists h's interfaces, retrying a dump the kernel interrupted.
func linkList(h *netlink.Handle) ([]netlink.Link, error) {
	var links []netlink.Link
	var err error
	for range 5 {
		links, err = h.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		return links, nil // the best list there is; a later scan repeats it
	}
	return links, err
}

// byMAC returns the first interface with address mac, or nil.
func byMAC(links []netlink.Link, mac net.HardwareAddr) netlink.Link {
	for _, l := range links {
		if bytes.Equal(l.Attrs().HardwareAddr, mac) {
			return l
		}
	}
	return nil
}

// waitForLink returns the interface with address mac in src, waiting for
// it to appear on link updates until timeout.
func waitForLink(ctx context.Context, src LinkSource, mac net.HardwareAddr, timeout time.Duration) (netlink.Link, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Subscribe before the first scan, so an interface that appears in
	// between is not missed.
	updates, err := src.Subscribe(wctx)
	if err != nil {
		log.G(ctx).WithError(err).Warn("network: no link updates; rescanning instead")
	}
	tick := time.NewTicker(rescanInterval)
	defer tick.Stop()
	for {
		links, err := src.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list network interfaces: %w", err)
		}
		if l := byMAC(links, mac); l != nil {
			return l, nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, fmt.Errorf("waiting for the interface with MAC %s: %w", mac, ctx.Err())
			}
			return nil, fmt.Errorf("no network interface with MAC %s appeared within %s: %w", mac, timeout, context.DeadlineExceeded)
		case _, ok := <-updates:
			if !ok {
				updates = nil // ended; the ticker goes on
			}
		case <-tick.C:
		}
	}
}
