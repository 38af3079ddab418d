package share

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// msize is the largest 9p message the guest offers (the server may choose
// less). hcsshim's guest offers 64 KiB; bigger messages halve the round
// trips of a large read over a slow channel, and the kernel's fd transport
// takes up to 1 MiB.
const msize = 512 << 10

// mountTimeout bounds dialing the host's server and the mount's 9p
// handshake: a host that never answers must not hold the request forever.
const mountTimeout = 30 * time.Second

// relayDrain bounds how long removing a share waits for the relay of a
// multiplexed connection to see the kernel let go of its end.
const relayDrain = 10 * time.Second

// options are the 9p mount options for the connection on fd, as hcsshim's
// guest passes them (trans=fd, one descriptor both ways, aname=ShareName),
// with the protocol version named.
func options(fd int, shareName string) string {
	o := fmt.Sprintf("trans=fd,rfdno=%d,wfdno=%d,version=9p2000.L,msize=%d,cache=none", fd, fd, msize)
	if shareName != "" {
		o += ",aname=" + shareName
	}
	return o
}

// mountPort dials the host's 9p server on d.Port and mounts the share
// over that connection. The kernel takes its own reference to the
// connection's descriptor, so unmounting closes it.
func (s *Shares) mountPort(ctx context.Context, d *protocol.MappedDirectory) (mounts.Undo, error) {
	ctx, cancel := context.WithTimeout(ctx, mountTimeout)
	defer cancel()
	c, err := s.dialer.Dial(ctx, d.Port)
	if err != nil {
		return nil, fmt.Errorf("dial 9p server on port %#x: %w", d.Port, err)
	}
	kernelEnd, relay, err := kernelFile(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	// The kernel's end stays ours only until the mount: a handshake that
	// outlives the deadline is cut by shutting the socket down.
	fd := int(kernelEnd.Fd())
	cut := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(cut)
		unix.Shutdown(fd, unix.SHUT_RDWR)
	})
	source := d.ShareName
	if source == "" {
		source = "9p"
	}
	err = unix.Mount(source, d.MountPath, "9p", flags(d), options(fd, d.ShareName))
	if !stop() {
		<-cut // the descriptor is closed only once nothing shuts it down
	}
	kernelEnd.Close()
	if err != nil {
		if relay != nil {
			relay.close()
		}
		return nil, fmt.Errorf("mount 9p share %q from port %#x at %s: %w", d.ShareName, d.Port, d.MountPath, err)
	}
	log.G(ctx).WithField("port", d.Port).WithField("target", d.MountPath).Debug("9p share mounted over port")
	return func(ctx context.Context) error {
		if err := mounts.Unmount(d.MountPath); err != nil {
			return err
		}
		if relay != nil {
			relay.wait(relayDrain)
		}
		return nil
	}, nil
}

// kernelFile returns a descriptor of a stream socket carrying c for the
// kernel's 9p fd transport: c's own socket when it has one (vsock, unix),
// else one end of a socket pair whose other end a relay copies to and
// from c (a multiplexed stream).
func kernelFile(c net.Conn) (*os.File, *relay, error) {
	if sc, ok := c.(syscall.Conn); ok {
		f, err := dupConn(sc)
		if err == nil {
			c.Close() // the duplicate keeps the socket open
			return f, nil, nil
		}
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socket pair for 9p relay: %w", err)
	}
	kernelEnd := os.NewFile(uintptr(fds[0]), "9p-kernel")
	relayEnd := os.NewFile(uintptr(fds[1]), "9p-relay")
	ours, err := net.FileConn(relayEnd) // a duplicate of relayEnd's descriptor
	relayEnd.Close()
	if err != nil {
		kernelEnd.Close()
		return nil, nil, fmt.Errorf("9p relay: %w", err)
	}
	return kernelEnd, startRelay(c, ours), nil
}

// dupConn duplicates sc's descriptor.
func dupConn(sc syscall.Conn) (*os.File, error) {
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var dupErr error
	if err := raw.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, dupErr
	}
	var typ int
	if typ, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		unix.Close(fd)
		return nil, errors.New("not a stream socket")
	}
	return os.NewFile(uintptr(fd), "9p-conn"), nil
}

// relay copies between the host's connection and the guest's socket pair
// end until either side closes.
type relay struct {
	host, ours net.Conn
	done       chan struct{}
}

func startRelay(host, ours net.Conn) *relay {
	r := &relay{host: host, ours: ours, done: make(chan struct{})}
	copied := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		transport.CloseWrite(dst)
		copied <- struct{}{}
	}
	go pipe(host, ours)
	go pipe(ours, host)
	go func() {
		<-copied
		// One direction ended: the kernel let go (or the host did).
		// Give the other a moment to drain, then close both.
		select {
		case <-copied:
		case <-time.After(relayDrain):
		}
		host.Close()
		ours.Close()
		close(r.done)
	}()
	return r
}

// wait waits up to d for the relay to end, then ends it.
func (r *relay) wait(d time.Duration) {
	select {
	case <-r.done:
	case <-time.After(d):
		r.close()
	}
}

// close ends the relay now.
func (r *relay) close() {
	r.host.Close()
	r.ours.Close()
	<-r.done
}
