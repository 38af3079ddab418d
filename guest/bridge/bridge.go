package bridge

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// Defaults for Config's zero values.
const (
	// DefaultMaxResponseSize is hcsshim's host bound on a frame it reads.
	DefaultMaxResponseSize = protocol.HcsshimMaxFrameSize
	// DefaultMaxInFlight bounds the requests handled at once; the read loop
	// stops reading while the bound is reached.
	DefaultMaxInFlight = 1024
	// maxDiscard is the largest oversize payload skipped to keep a
	// connection in sync; a larger one drops the connection.
	maxDiscard = 64 << 20
	// maxErrorMessage bounds an error message sent to the host.
	maxErrorMessage = 4096
)

// Config configures a Bridge.
type Config struct {
	// Handler serves every negotiated request (usually a *Mux).
	Handler Handler
	// Capabilities answered to NegotiateProtocol.
	Capabilities protocol.Capabilities
	// MaxFrameSize bounds frames read (protocol.MaxFrameSize if 0).
	MaxFrameSize uint32
	// MaxResponseSize bounds frames written (DefaultMaxResponseSize if 0);
	// a larger response is replaced by an error response.
	MaxResponseSize int
	// MaxInFlight bounds concurrent requests (DefaultMaxInFlight if 0).
	MaxInFlight int
	// Started is when the agent started; each negotiation logs the time
	// since (start-to-ready). Zero leaves it out.
	Started time.Time
}

// Bridge serves the host over one connection at a time and redials.
type Bridge struct {
	handler  Handler
	caps     protocol.Capabilities
	maxFrame uint32
	maxResp  int
	inflight chan struct{}
	notes    *notifyQueue
	started  time.Time
}

// New returns a Bridge serving cfg.Handler.
func New(cfg Config) *Bridge {
	b := &Bridge{
		handler:  cfg.Handler,
		caps:     cfg.Capabilities,
		maxFrame: cfg.MaxFrameSize,
		maxResp:  cfg.MaxResponseSize,
		notes:    newNotifyQueue(defaultMaxNotifications),
		started:  cfg.Started,
	}
	if b.maxFrame == 0 {
		b.maxFrame = protocol.MaxFrameSize
	}
	if b.maxResp == 0 {
		b.maxResp = DefaultMaxResponseSize
	}
	n := cfg.MaxInFlight
	if n <= 0 {
		n = DefaultMaxInFlight
	}
	b.inflight = make(chan struct{}, n)
	return b
}

// Notify queues a container notification; it is sent on the current
// connection once negotiated, or on the next one. One without an ActivityId
// gets protocol.NullActivityID: hcsshim's host decodes it as a GUID and
// drops the bridge on an empty one.
func (b *Bridge) Notify(ctx context.Context, n protocol.ContainerNotificationMessage) {
	if n.ActivityID == "" {
		n.ActivityID = protocol.NullActivityID
	}
	b.notes.push(ctx, n)
}

// Run dials the host's bridge port and serves it, redialing with backoff
// whenever the connection drops, until ctx ends.
func (b *Bridge) Run(ctx context.Context, d transport.Dialer) error {
	const minBackoff, maxBackoff = 10 * time.Millisecond, time.Second
	backoff := minBackoff
	for {
		conn, err := d.Dial(ctx, transport.BridgePort)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.G(ctx).WithError(err).Debug("bridge dial failed; retrying")
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = minBackoff
		log.G(ctx).Info("bridge connected")
		err = b.Serve(ctx, conn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.G(ctx).WithError(err).Warn("bridge connection lost; redialing")
	}
}

// Serve serves one connection until it fails or ctx ends; it closes conn
// and returns once every handler it started has returned.
func (b *Bridge) Serve(ctx context.Context, conn net.Conn) error {
	ctx, cancel := context.WithCancelCause(ctx)
	c := &connection{
		b:          b,
		conn:       conn,
		negotiated: make(chan struct{}),
		cancel:     cancel,
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { c.notifyLoop(ctx) })
	err := c.readLoop(ctx, &wg)
	cancel(err)
	conn.Close()
	wg.Wait()
	if cause := context.Cause(ctx); err == nil && cause != nil {
		err = cause
	}
	return err
}

// connection is the state of one bridge connection.
type connection struct {
	b          *Bridge
	conn       net.Conn
	negotiated chan struct{}
	cancel     context.CancelCauseFunc

	wmu  sync.Mutex // one frame on the wire at a time
	werr error      // the first write failure
}

func (c *connection) readLoop(ctx context.Context, wg *sync.WaitGroup) error {
	br := bufio.NewReaderSize(c.conn, 64<<10)
	fr := protocol.NewReader(br, c.b.maxFrame)
	for {
		hdr, payload, err := fr.Next()
		if errors.Is(err, protocol.ErrFrameSize) {
			fatal := hdr.Size < protocol.HeaderSize || hdr.Size-protocol.HeaderSize > maxDiscard
			// Before dropping the connection, make sure the answer is out.
			c.send(encodeError(ctx, hdr, "", fmt.Errorf("%v: %w", err, protocol.HrInvalidArg)))
			if fatal {
				return err
			}
			if _, err := io.CopyN(io.Discard, br, int64(hdr.Size-protocol.HeaderSize)); err != nil {
				return fmt.Errorf("skip oversize frame: %w", err)
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := c.dispatch(ctx, wg, hdr, payload); err != nil {
			return err
		}
	}
}

// dispatch answers negotiation and gating in line and hands every other
// request to a handler goroutine, waiting for a free slot first.
func (c *connection) dispatch(ctx context.Context, wg *sync.WaitGroup, hdr protocol.Header, payload []byte) error {
	if hdr.Type.Kind() != protocol.KindRequest {
		log.G(ctx).WithField(log.FieldMessage, hdr.Type).Warn("ignoring a frame that is not a request")
		return nil
	}
	req := &Request{Type: hdr.Type, ID: hdr.ID, Body: payload}
	if err := req.Decode(&req.Base); err != nil {
		c.respondError(ctx, hdr, "", err)
		return nil
	}
	if hdr.Type == protocol.NegotiateProtocol {
		resp, err := c.negotiate(req)
		// The answer goes out before anything negotiation unblocks
		// (queued notifications, later responses).
		c.send(c.encodeResponse(ctx, hdr, req.Base.ActivityID, resp, err))
		if err == nil {
			c.markNegotiated()
			if !c.b.started.IsZero() {
				log.G(ctx).WithField("since-start", time.Since(c.b.started).String()).Info("bridge negotiated")
			}
		}
		return nil
	}
	select {
	case <-c.negotiated:
	default:
		c.respondError(ctx, hdr, req.Base.ActivityID, fmt.Errorf("%s before NegotiateProtocol: %w", hdr.Type, protocol.HrNotImpl))
		return nil
	}
	select {
	case c.b.inflight <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	wg.Go(func() {
		defer func() { <-c.b.inflight }()
		rctx := log.WithLogger(protocol.WithActivityID(ctx, req.Base.ActivityID), log.G(ctx).WithFields(map[string]any{
			log.FieldMessage:     hdr.Type.String(),
			log.FieldRequestID:   hdr.ID,
			log.FieldActivityID:  req.Base.ActivityID,
			log.FieldContainerID: req.Base.ContainerID,
		}))
		var once sync.Once
		req.respond = func(resp protocol.Response, err error) {
			once.Do(func() {
				c.send(c.encodeResponse(rctx, hdr, req.Base.ActivityID, resp, err))
				if req.afterWrite != nil {
					req.afterWrite()
				}
			})
		}
		resp, err := c.serve(rctx, req)
		if req.deferred && err == nil {
			return // the handler answers later; the slot is free meanwhile
		}
		req.respond(resp, err)
	})
	return nil
}

// serve calls the handler, turning a panic into an error response.
func (c *connection) serve(ctx context.Context, req *Request) (resp protocol.Response, err error) {
	defer func() {
		if p := recover(); p != nil {
			log.G(ctx).WithField("stack", string(debug.Stack())).Errorf("handler panic: %v", p)
			resp, err = nil, fmt.Errorf("internal error handling %s: %v: %w", req.Type, p, protocol.HrFail)
		}
	}()
	return c.b.handler.ServeBridge(ctx, req)
}

func (c *connection) negotiate(req *Request) (protocol.Response, error) {
	var nreq protocol.NegotiateProtocolRequest
	if err := req.Decode(&nreq); err != nil {
		return nil, err
	}
	if nreq.MaximumVersion < protocol.ProtocolVersion || nreq.MinimumVersion > protocol.ProtocolVersion {
		return nil, fmt.Errorf("protocol versions [%d, %d] exclude %d: %w",
			nreq.MinimumVersion, nreq.MaximumVersion, protocol.ProtocolVersion, protocol.HrVmcomputeUnsupportedProtocol)
	}
	return &protocol.NegotiateProtocolResponse{Version: protocol.ProtocolVersion, Capabilities: c.b.caps}, nil
}

func (c *connection) markNegotiated() {
	select {
	case <-c.negotiated:
	default:
		close(c.negotiated)
	}
}

func (c *connection) respondError(ctx context.Context, hdr protocol.Header, activity string, err error) {
	c.send(encodeError(ctx, hdr, activity, err))
}

// encodeResponse frames a handler's outcome.
func (c *connection) encodeResponse(ctx context.Context, hdr protocol.Header, activity string, resp protocol.Response, err error) []byte {
	if err != nil {
		return encodeError(ctx, hdr, activity, err)
	}
	if resp == nil {
		resp = &protocol.ResponseBase{}
	}
	resp.Response().ActivityID = activity
	body, err := json.Marshal(resp)
	if err == nil && len(body)+protocol.HeaderSize > c.b.maxResp {
		err = fmt.Errorf("response of %d bytes exceeds the %d-byte frame bound: %w", len(body), c.b.maxResp, protocol.HrFail)
	}
	if err != nil {
		return encodeError(ctx, hdr, activity, err)
	}
	return protocol.AppendFrame(nil, hdr.Type.Response(), hdr.ID, body)
}

// encodeError frames a failure response; resultOf picks its HRESULT.
func encodeError(ctx context.Context, hdr protocol.Header, activity string, err error) []byte {
	hr := resultOf(err)
	msg := err.Error()
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage]
	}
	log.G(ctx).WithFields(map[string]any{
		log.FieldMessage: hdr.Type.String(), log.FieldRequestID: hdr.ID, "result": hr.Error(),
	}).WithError(err).Debug("request failed")
	resp := &protocol.ResponseBase{
		Result:       int32(hr),
		ErrorMessage: msg,
		ActivityID:   activity,
		ErrorRecords: []protocol.ErrorRecord{{Result: int32(hr), Message: msg, ModuleName: "gcs"}},
	}
	body, _ := json.Marshal(resp) // strings and integers always encode
	return protocol.AppendFrame(nil, hdr.Type.Response(), hdr.ID, body)
}

// send writes one frame. Writers take turns on the socket directly: a
// handoff to a writer goroutine would cost every response a wake-up. After
// the first failed write the connection is cancelled and sends are dropped.
func (c *connection) send(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if _, err := c.conn.Write(frame); err != nil {
		c.werr = fmt.Errorf("bridge write: %w", err)
		c.cancel(c.werr)
		return c.werr
	}
	return nil
}
