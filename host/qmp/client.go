package qmp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/uvmgcs/gcs/internal/log"
)

// ErrClosed is returned by Execute once the connection is gone, whether Close
// was called or QEMU hung up (as it does after "quit").
var ErrClosed = errors.New("qmp: connection closed")

// answer is what the read loop hands the caller waiting on an id.
type answer struct {
	ret json.RawMessage
	err *Error
}

// Client is one negotiated QMP connection. Its methods are safe for
// concurrent use.
type Client struct {
	conn     net.Conn
	greeting Greeting
	logger   *logrus.Entry

	writeMu sync.Mutex // one request on the wire at a time

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan answer
	subs    map[*Subscription]struct{}
	readErr error // why the read loop ended; set before done closes

	done      chan struct{} // closed when the read loop ends
	closeOnce sync.Once
}

// Dial connects to the QMP unix socket at path and negotiates capabilities.
// It does not retry: a caller racing QEMU's start retries Dial itself.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial qmp socket: %w", err)
	}
	c, err := New(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// New reads QEMU's greeting from conn, leaves negotiation mode with
// qmp_capabilities, and returns a Client that owns conn. ctx bounds the
// negotiation only; the Client logs with ctx's logger for its lifetime.
func New(ctx context.Context, conn net.Conn) (*Client, error) {
	peer := "qmp"
	if a := conn.RemoteAddr(); a != nil {
		peer = a.String()
	}
	c := &Client{
		conn:    conn,
		logger:  log.G(ctx).WithField("qmp", peer),
		pending: make(map[string]chan answer),
		subs:    make(map[*Subscription]struct{}),
		done:    make(chan struct{}),
	}
	r := bufio.NewReaderSize(conn, 64<<10)

	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	line, err := readLine(r)
	if !stop() {
		return nil, fmt.Errorf("read qmp greeting: %w", ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("read qmp greeting: %w", err)
	}
	m, err := decode(line)
	if err != nil {
		return nil, fmt.Errorf("read qmp greeting: %w", err)
	}
	if m.kind() != kindGreeting {
		return nil, fmt.Errorf("read qmp greeting: got %.200q", line)
	}
	c.greeting = m.greeting()

	go c.readLoop(r)
	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("negotiate qmp capabilities: %w", err)
	}
	return c, nil
}

// Greeting is what QEMU said on connect.
func (c *Client) Greeting() Greeting { return c.greeting }

// Done is closed when the connection is gone.
func (c *Client) Done() <-chan struct{} { return c.done }

// Execute runs cmd with args (any JSON-marshalable value, or nil for none)
// and decodes the "return" member into result unless result is nil. A QMP
// error answer is returned as a *Error, wrapped with the command's name.
// Cancelling ctx abandons the wait; QEMU still runs the command.
func (c *Client) Execute(ctx context.Context, cmd string, args any, result any) error {
	return c.execute(ctx, cmd, args, nil, result)
}

func (c *Client) execute(ctx context.Context, cmd string, args any, oob []byte, result any) error {
	ch := make(chan answer, 1)
	c.mu.Lock()
	if c.isDone() {
		c.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", cmd, c.closedErr())
	}
	c.nextID++
	id := c.nextID
	c.pending[idKey(id)] = ch
	c.mu.Unlock()
	defer c.forget(id)

	c.logger.WithField("id", id).Debugf("qmp execute %s", cmd)
	line, err := json.Marshal(request{Execute: cmd, Arguments: args, ID: id})
	if err != nil {
		return fmt.Errorf("qmp %s: encode arguments: %w", cmd, err)
	}
	if err := c.write(ctx, append(line, '\n'), oob); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}

	select {
	case a := <-ch:
		return a.decode(cmd, result)
	case <-ctx.Done():
		return fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	case <-c.done:
		select {
		case a := <-ch: // answered just before the hang-up, as "quit" is
			return a.decode(cmd, result)
		default:
			return fmt.Errorf("qmp %s: %w", cmd, c.closedErr())
		}
	}
}

func (a answer) decode(cmd string, result any) error {
	if a.err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, a.err)
	}
	if result != nil {
		if err := json.Unmarshal(a.ret, result); err != nil {
			return fmt.Errorf("qmp %s: decode return: %w", cmd, err)
		}
	}
	return nil
}

// Close hangs up, fails pending commands with ErrClosed, ends every
// subscription, and waits for the read loop. It is safe to call twice.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() { err = c.conn.Close() })
	<-c.done
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close qmp connection: %w", err)
	}
	return nil
}

func (c *Client) write(ctx context.Context, line, oob []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
		defer c.conn.SetWriteDeadline(time.Time{})
	}
	var err error
	if oob != nil {
		_, _, err = c.conn.(*net.UnixConn).WriteMsgUnix(line, oob, nil)
	} else {
		_, err = c.conn.Write(line)
	}
	if err != nil {
		if c.isDone() {
			return c.closedErr()
		}
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, idKey(id))
	c.mu.Unlock()
}

func (c *Client) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// closedErr is ErrClosed, with the read loop's reason when it was not a
// plain hang-up. Call only after done is closed.
func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readErr != nil {
		return fmt.Errorf("%w: %w", ErrClosed, c.readErr)
	}
	return ErrClosed
}

// readLoop owns the read side: answers go to their callers by id, events to
// subscribers. It ends on the first read or decode error.
func (c *Client) readLoop(r *bufio.Reader) {
	err := c.read(r)
	c.mu.Lock()
	if err != nil && !isHangup(err) {
		c.readErr = err
	}
	subs := c.subs
	c.subs = nil
	close(c.done)
	c.mu.Unlock()
	c.closeOnce.Do(func() { c.conn.Close() })
	for s := range subs {
		s.end()
	}
	if c.readErr != nil {
		c.logger.WithError(c.readErr).Warn("qmp connection failed")
	}
}

func (c *Client) read(r *bufio.Reader) error {
	for {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		m, err := decode(line)
		if err != nil {
			return err
		}
		switch m.kind() {
		case kindEvent:
			c.publish(m.event())
		case kindAnswer:
			c.deliver(m)
		default:
			c.logger.Debugf("qmp: ignoring unexpected message %.200q", line)
		}
	}
}

func (c *Client) deliver(m *message) {
	key := string(bytes.TrimSpace(m.ID))
	c.mu.Lock()
	ch, ok := c.pending[key]
	delete(c.pending, key)
	c.mu.Unlock()
	if !ok {
		// An abandoned call, or an answer without an id (QEMU answers a
		// request it cannot parse that way); no caller is waiting.
		c.logger.WithField("id", key).Debug("qmp: answer nobody waits for")
		return
	}
	ch <- answer{ret: m.Return, err: m.Error}
}

// readLine returns one line without its terminator, refusing lines past maxLine.
func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > maxLine {
			return nil, fmt.Errorf("qmp message longer than %d bytes", maxLine)
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			line := bytes.TrimSpace(buf)
			if len(line) == 0 {
				buf = buf[:0]
				continue
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

func isHangup(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}
