package network

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// fakeLinks is a LinkSource whose interfaces the test adds.
type fakeLinks struct {
	mu      sync.Mutex
	links   []netlink.Link
	updates chan struct{}
	subErr  error
	lists   int
}

func newFakeLinks() *fakeLinks { return &fakeLinks{updates: make(chan struct{}, 1)} }

func (f *fakeLinks) LinkList() ([]netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	return append([]netlink.Link(nil), f.links...), nil
}

func (f *fakeLinks) Subscribe(ctx context.Context) (<-chan struct{}, error) {
	if f.subErr != nil {
		return nil, f.subErr
	}
	return f.updates, nil
}

func (f *fakeLinks) scans() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists
}

func (f *fakeLinks) add(name string, mac net.HardwareAddr) {
	f.mu.Lock()
	f.links = append(f.links, &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac}})
	f.mu.Unlock()
	select {
	case f.updates <- struct{}{}:
	default:
	}
}

func TestWaitForLinkOnUpdate(t *testing.T) {
	f := newFakeLinks()
	mac, _ := ParseMAC("00-15-5D-00-00-01")
	other, _ := ParseMAC("00-15-5D-00-00-02")
	f.links = []netlink.Link{&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", HardwareAddr: other}}}
	go func() {
		time.Sleep(50 * time.Millisecond)
		f.add("eth1", mac)
	}()
	l, err := waitForLink(context.Background(), f, mac, 10*time.Second)
	if err != nil || l.Attrs().Name != "eth1" {
		t.Fatalf("got %v, %v", l, err)
	}
	// Found on an update, not a rescan: one list before, one after.
	if n := f.scans(); n != 2 {
		t.Errorf("%d scans; want 2", n)
	}
}

func TestWaitForLinkTimesOut(t *testing.T) {
	f := newFakeLinks()
	mac, _ := ParseMAC("00-15-5D-00-00-09")
	_, err := waitForLink(context.Background(), f, mac, 100*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "00:15:5d:00:00:09") {
		t.Fatalf("got %v; want a timeout naming the MAC", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := waitForLink(ctx, f, mac, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
}

func TestWaitForLinkRescansWithoutUpdates(t *testing.T) {
	f := newFakeLinks()
	f.subErr = errors.New("no netlink here")
	mac, _ := ParseMAC("00-15-5D-00-00-03")
	go func() {
		time.Sleep(50 * time.Millisecond)
		f.add("eth3", mac)
	}()
	l, err := waitForLink(context.Background(), f, mac, 10*time.Second)
	if err != nil || l.Attrs().Name != "eth3" {
		t.Fatalf("got %v, %v", l, err)
	}
}
