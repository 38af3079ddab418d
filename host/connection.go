package host

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"

	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// Config configures a GuestConnection.
type Config struct {
	// IO listens on the ports the guest dials for stdio streams.
	IO transport.Listener
	// Logger is the connection's logger; the context's if nil.
	Logger *logrus.Entry
	// MaxRequestSize bounds a request frame (protocol.HcsshimMaxFrameSize
	// if 0, what any guest accepts).
	MaxRequestSize int
}

// maxNotifiedContainers bounds the per-container notification queues a
// guest can make the host hold.
const maxNotifiedContainers = 4096

// notificationDepth is how many undelivered notifications one container keeps.
const notificationDepth = 16

// GuestConnection is a negotiated bridge connection to a guest's gcs.
// It is safe for concurrent use.
type GuestConnection struct {
	conn    net.Conn
	cfg     Config
	log     *logrus.Entry
	version uint32
	caps    protocol.Capabilities

	wmu sync.Mutex // serialises frame writes

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan reply
	notes   map[string]chan protocol.ContainerNotificationMessage
	ctrs    map[string]*Container // open handles, one per id
	err     error                 // set once the connection is dead
	done    chan struct{}

	nextPort atomic.Uint32

	events hub
}

type reply struct {
	typ  protocol.MessageType
	body []byte
}

// Connect negotiates protocol version 4 on conn, which a guest dialed (or
// the host dialed to a guest), and returns the connection. On failure the
// caller still owns conn.
func Connect(ctx context.Context, conn net.Conn, cfg Config) (*GuestConnection, error) {
	if cfg.MaxRequestSize <= 0 {
		cfg.MaxRequestSize = protocol.HcsshimMaxFrameSize
	}
	l := cfg.Logger
	if l == nil {
		l = log.G(ctx)
	}
	gc := &GuestConnection{
		conn:    conn,
		cfg:     cfg,
		log:     l,
		pending: make(map[uint64]chan reply),
		notes:   make(map[string]chan protocol.ContainerNotificationMessage),
		ctrs:    make(map[string]*Container),
		done:    make(chan struct{}),
	}
	gc.nextPort.Store(transport.FirstStdioPort - 1)
	go gc.readLoop()
	var resp protocol.NegotiateProtocolResponse
	err := gc.RPC(ctx, protocol.NegotiateProtocol, &protocol.NegotiateProtocolRequest{
		RequestBase:    protocol.RequestBase{ContainerID: protocol.UVMContainerID},
		MinimumVersion: protocol.ProtocolVersion,
		MaximumVersion: protocol.ProtocolVersion,
	}, &resp)
	if err == nil && resp.Version != protocol.ProtocolVersion {
		err = fmt.Errorf("guest chose protocol version %d, want %d", resp.Version, protocol.ProtocolVersion)
	}
	if err != nil {
		gc.shutdown(errors.New("negotiation failed"), false)
		return nil, fmt.Errorf("negotiate: %w", err)
	}
	gc.version, gc.caps = resp.Version, resp.Capabilities
	return gc, nil
}

// Version is the negotiated protocol version.
func (gc *GuestConnection) Version() uint32 { return gc.version }

// Capabilities are what the guest announced.
func (gc *GuestConnection) Capabilities() protocol.Capabilities { return gc.caps }

// Done is closed when the connection has died or been closed.
func (gc *GuestConnection) Done() <-chan struct{} { return gc.done }

// Err is why the connection ended; nil while it is alive.
func (gc *GuestConnection) Err() error {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	return gc.err
}

// Close closes the connection; calls in flight fail with net.ErrClosed.
func (gc *GuestConnection) Close() error {
	gc.shutdown(errors.New("closed"), true)
	return nil
}

// shutdown marks the connection dead with cause, fails every pending call
// and closes the socket (if closeConn: Connect's caller keeps its conn).
func (gc *GuestConnection) shutdown(cause error, closeConn bool) {
	gc.mu.Lock()
	if gc.err != nil {
		gc.mu.Unlock()
		return
	}
	gc.err = fmt.Errorf("guest connection: %v: %w", cause, net.ErrClosed)
	pending := gc.pending
	gc.pending = nil
	close(gc.done)
	gc.mu.Unlock()
	for _, ch := range pending {
		close(ch)
	}
	gc.closeEvents()
	if closeConn {
		gc.conn.Close()
	} else {
		// Unblock the read loop without closing the caller's conn.
		_ = gc.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// RPC sends req as a typ request and decodes the response into resp (which
// may be nil). A failed response is a *protocol.Error; errors.Is matches its
// HRESULT, and its errdefs class (Classify). It fails with an error
// wrapping net.ErrClosed and errdefs.ErrUnavailable when the connection
// dies first, and with ctx's error when ctx ends first.
func (gc *GuestConnection) RPC(ctx context.Context, typ protocol.MessageType, req protocol.Request, resp any) error {
	return Classify(gc.rpc(ctx, typ, req, resp))
}

func (gc *GuestConnection) rpc(ctx context.Context, typ protocol.MessageType, req protocol.Request, resp any) error {
	if typ.Kind() != protocol.KindRequest {
		return fmt.Errorf("%s is not a request type", typ)
	}
	b := req.Base()
	if b.ActivityID == "" {
		b.ActivityID = uuid.NewString()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s: %w", typ, err)
	}
	body = append(body, '\n')
	if protocol.HeaderSize+len(body) > gc.cfg.MaxRequestSize {
		return fmt.Errorf("%s request is %d bytes, the bound is %d: %w", typ, protocol.HeaderSize+len(body), gc.cfg.MaxRequestSize, protocol.HrInvalidArg)
	}
	ch := make(chan reply, 1)
	gc.mu.Lock()
	if gc.err != nil {
		err := gc.err
		gc.mu.Unlock()
		return err
	}
	gc.nextID++
	id := gc.nextID
	gc.pending[id] = ch
	gc.mu.Unlock()

	gc.wmu.Lock()
	_, err = gc.conn.Write(protocol.AppendFrame(nil, typ, id, body))
	gc.wmu.Unlock()
	if err != nil {
		gc.shutdown(fmt.Errorf("write: %w", err), true)
		return gc.Err()
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return gc.Err()
		}
		return decodeReply(typ, r, resp)
	case <-ctx.Done():
		gc.mu.Lock()
		delete(gc.pending, id)
		gc.mu.Unlock()
		return fmt.Errorf("%s: %w", typ, ctx.Err())
	}
}

func decodeReply(typ protocol.MessageType, r reply, resp any) error {
	if r.typ != typ.Response() {
		return fmt.Errorf("guest answered %s with %s: %w", typ, r.typ, protocol.HrFail)
	}
	var rb protocol.ResponseBase
	if err := json.Unmarshal(r.body, &rb); err != nil {
		return fmt.Errorf("decode %s response: %w", typ, err)
	}
	if err := rb.Err(typ); err != nil {
		return err
	}
	if resp != nil {
		if err := json.Unmarshal(r.body, resp); err != nil {
			return fmt.Errorf("decode %s response: %w", typ, err)
		}
	}
	return nil
}

// readLoop delivers responses to their callers and notifications to their
// containers' queues until the connection fails.
func (gc *GuestConnection) readLoop() {
	r := protocol.NewReader(bufio.NewReaderSize(gc.conn, 64<<10), protocol.MaxFrameSize)
	for {
		hdr, body, err := r.Next()
		if err != nil {
			gc.shutdown(fmt.Errorf("read: %w", err), true)
			return
		}
		switch hdr.Type.Kind() {
		case protocol.KindResponse:
			gc.mu.Lock()
			ch, ok := gc.pending[hdr.ID]
			delete(gc.pending, hdr.ID)
			gc.mu.Unlock()
			if ok {
				ch <- reply{typ: hdr.Type, body: body}
			}
		case protocol.KindNotification:
			gc.notify(hdr, body)
		default:
			gc.log.WithField(log.FieldMessage, hdr.Type.String()).Warn("guest sent a request; ignored")
		}
	}
}

func (gc *GuestConnection) notify(hdr protocol.Header, body []byte) {
	var n protocol.ContainerNotificationMessage
	if hdr.Type != protocol.ContainerNotification || json.Unmarshal(body, &n) != nil {
		gc.log.WithField(log.FieldMessage, hdr.Type.String()).Warn("malformed notification; dropped")
		return
	}
	ch := gc.notifications(n.ContainerID)
	if ch == nil {
		gc.log.WithField(log.FieldContainerID, n.ContainerID).Warn("too many containers with notifications; dropped")
		return
	}
	select {
	case ch <- n:
	default:
		gc.log.WithField(log.FieldContainerID, n.ContainerID).Warn("notification queue full; dropped")
	}
}

// Notifications returns the queue of notifications the guest sends about
// container cid. Notifications that arrive before the first call are kept.
func (gc *GuestConnection) Notifications(cid string) <-chan protocol.ContainerNotificationMessage {
	return gc.notifications(cid)
}

func (gc *GuestConnection) notifications(cid string) chan protocol.ContainerNotificationMessage {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	ch, ok := gc.notes[cid]
	if !ok {
		if len(gc.notes) >= maxNotifiedContainers {
			return nil
		}
		ch = make(chan protocol.ContainerNotificationMessage, notificationDepth)
		gc.notes[cid] = ch
	}
	return ch
}

// ForgetNotifications drops cid's notification queue (after its deletion).
func (gc *GuestConnection) ForgetNotifications(cid string) {
	gc.mu.Lock()
	delete(gc.notes, cid)
	gc.mu.Unlock()
}

// Modify sends a ModifySettings request for container cid (the UVM when
// cid is protocol.UVMContainerID).
func (gc *GuestConnection) Modify(ctx context.Context, cid string, m protocol.ModificationRequest) error {
	return gc.RPC(ctx, protocol.ModifySettings, &protocol.ModifySettingsRequest{
		RequestBase: protocol.RequestBase{ContainerID: cid},
		Request:     m,
	}, nil)
}

// DumpStacks returns the guest agent's goroutine stacks.
func (gc *GuestConnection) DumpStacks(ctx context.Context) (string, error) {
	var resp protocol.DumpStacksResponse
	err := gc.RPC(ctx, protocol.DumpStacks, &protocol.RequestBase{ContainerID: protocol.UVMContainerID}, &resp)
	return resp.GuestStacks, err
}

// allocPort returns a fresh port for a stdio stream.
func (gc *GuestConnection) allocPort() uint32 { return gc.nextPort.Add(1) }

// ShutdownVM has the agent power the utility VM off. The connection dies
// with the VM; that is not an error.
func (gc *GuestConnection) ShutdownVM(ctx context.Context) error {
	err := gc.RPC(ctx, protocol.ShutdownForced, &protocol.RequestBase{ContainerID: protocol.UVMContainerID}, nil)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
