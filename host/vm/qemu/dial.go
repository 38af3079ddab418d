//go:build linux

package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// dialRetryInterval is how often a socket QEMU has not created yet is tried.
const dialRetryInterval = 10 * time.Millisecond

// errExited is returned while dialing when QEMU is gone.
var errExited = errors.New("qemu exited")

// dialUnix connects to the unix socket at path, retrying while it does not
// exist or refuses (QEMU still starting), until ctx ends or exited closes.
func dialUnix(ctx context.Context, path string, exited <-chan struct{}) (net.Conn, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("dial %s: %w", path, err)
		}
		t := time.NewTimer(dialRetryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("dial %s: %w (last error: %w)", path, ctx.Err(), err)
		case <-exited:
			t.Stop()
			return nil, fmt.Errorf("dial %s: %w", path, errExited)
		case <-t.C:
		}
	}
}
