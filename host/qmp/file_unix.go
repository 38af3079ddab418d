//go:build unix

package qmp

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
)

// ExecuteWithFile is Execute with f's descriptor passed along (SCM_RIGHTS),
// as QEMU's "getfd" and "add-fd" take it. It needs a unix socket
// connection; QEMU gets its own copy, f stays the caller's.
func (c *Client) ExecuteWithFile(ctx context.Context, cmd string, args any, f *os.File, result any) error {
	if _, ok := c.conn.(*net.UnixConn); !ok {
		return fmt.Errorf("qmp %s: passing a file needs a unix socket connection", cmd)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	var oob []byte
	if err := rc.Control(func(fd uintptr) { oob = syscall.UnixRights(int(fd)) }); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	// f must stay open until the message is written.
	defer runtime.KeepAlive(f)
	return c.execute(ctx, cmd, args, oob, result)
}
