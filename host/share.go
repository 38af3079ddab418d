package host

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/uvmgcs/gcs/host/plan9"
	"github.com/uvmgcs/gcs/protocol"
)

// Share is a host directory the guest has mounted over 9p: a server on a
// port of the agent channel that this value owns, and the guest's mount.
// Release it to unmount and stop serving.
type Share struct {
	gc  *GuestConnection
	srv *plan9.Server
	d   protocol.MappedDirectory

	mu       sync.Mutex
	released bool
}

// ShareDirectory serves hostDir over a fresh port of the agent channel
// and has the guest mount it at guestPath (a directory under /run/mounts,
// the agent's state root or /run/layers), read-only when readOnly: then
// the host's server refuses every change as well. It is the host half of
// hcsshim's Plan9 share: the guest dials the port and mounts 9p over the
// connection (MappedDirectory with a Port).
func (gc *GuestConnection) ShareDirectory(ctx context.Context, hostDir, guestPath string, readOnly bool) (*Share, error) {
	d, srv, err := gc.serveDirectory(hostDir, readOnly)
	if err != nil {
		return nil, err
	}
	d.MountPath = guestPath
	s := &Share{gc: gc, srv: srv, d: d}
	if err := gc.AddMappedDirectory(ctx, s.d); err != nil {
		srv.Close()
		return nil, fmt.Errorf("share %s at %s: %w", hostDir, guestPath, err)
	}
	return s, nil
}

// ServeDirectory is ShareDirectory's host half: it serves hostDir over a
// fresh port of the agent channel and returns the MappedDirectory (its
// MountPath empty) the guest mounts it with, and a function that stops
// serving, to call after the guest has unmounted it. host/uvm's Plan9
// sharer uses it.
func (gc *GuestConnection) ServeDirectory(hostDir string, readOnly bool) (protocol.MappedDirectory, func(), error) {
	d, srv, err := gc.serveDirectory(hostDir, readOnly)
	if err != nil {
		return protocol.MappedDirectory{}, nil, err
	}
	return d, func() { srv.Close() }, nil
}

func (gc *GuestConnection) serveDirectory(hostDir string, readOnly bool) (protocol.MappedDirectory, *plan9.Server, error) {
	var d protocol.MappedDirectory
	if gc.cfg.IO == nil {
		return d, nil, fmt.Errorf("share %s: the connection has no port listener (Config.IO)", hostDir)
	}
	if fi, err := os.Stat(hostDir); err != nil {
		return d, nil, fmt.Errorf("share %s: %w", hostDir, err)
	} else if !fi.IsDir() {
		return d, nil, fmt.Errorf("share %s: not a directory", hostDir)
	}
	port := gc.allocPort()
	// hcsshim names its shares with decimal numbers; ours is the port's.
	name := strconv.FormatUint(uint64(port), 10)
	srv := plan9.New()
	if err := srv.Export(name, hostDir, readOnly); err != nil {
		return d, nil, fmt.Errorf("share %s: %w", hostDir, err)
	}
	l, err := gc.cfg.IO.Listen(port)
	if err != nil {
		srv.Close()
		return d, nil, fmt.Errorf("share %s: %w", hostDir, err)
	}
	go srv.Serve(l)
	return protocol.MappedDirectory{Port: port, ShareName: name, ReadOnly: readOnly}, srv, nil
}

// GuestPath is where the guest mounted the share.
func (s *Share) GuestPath() string { return s.d.MountPath }

// Request is the MappedDirectory the guest was sent: another Add of it
// takes another reference to the guest's mount.
func (s *Share) Request() protocol.MappedDirectory { return s.d }

// Release has the guest unmount the share, then stops serving it and
// waits for the server's goroutines. When the guest refuses the unmount
// the share keeps being served and Release may be called again; once the
// connection to the guest is gone there is no mount left to serve, and
// Release stops the server. Releasing twice is a no-op.
func (s *Share) Release(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return nil
	}
	err := s.gc.RemoveMappedDirectory(ctx, s.d)
	if err != nil && s.gc.Err() == nil {
		return fmt.Errorf("release share at %s: %w", s.d.MountPath, err)
	}
	s.srv.Close()
	s.released = true
	return nil
}
