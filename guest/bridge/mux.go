package bridge

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/uvmgcs/gcs/protocol"
)

// Request is one request frame as a handler sees it.
type Request struct {
	Type protocol.MessageType
	ID   uint64
	// Base is the decoded ContainerId/ActivityId common to every request.
	Base protocol.RequestBase
	// Body is the raw JSON payload.
	Body []byte

	afterWrite func()
	respond    func(protocol.Response, error) // answers once; set by the bridge
	deferred   bool
}

// AfterResponse asks the bridge to call f once the response to this request
// has been written (or could not be), e.g. to power off only after the host
// has its answer.
func (r *Request) AfterResponse(f func()) { r.afterWrite = f }

// Defer lets a handler answer after it returns, through the function Defer
// returns, from any goroutine, so that a request that waits (for a process
// to exit) holds no goroutine while it does. Only the first answer counts.
// A handler that deferred returns (nil, nil), or an error that becomes the
// answer unless one was already given.
func (r *Request) Defer() func(protocol.Response, error) {
	r.deferred = true
	return r.respond
}

// Decode unmarshals the payload into v; malformed JSON is an error wrapping
// protocol.HrVmcomputeInvalidJSON.
func (r *Request) Decode(v any) error {
	return DecodeJSON(r.Body, v, r.Type.String())
}

// DecodeJSON unmarshals b into v, naming what on failure; malformed JSON is an
// error wrapping protocol.HrVmcomputeInvalidJSON. Handlers use it for the
// fields that carry JSON inside a string.
func DecodeJSON(b []byte, v any, what string) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %v: %w", what, err, protocol.HrVmcomputeInvalidJSON)
	}
	return nil
}

// Handler serves one request. It returns a response body (a value embedding
// protocol.ResponseBase, or nil for a bare success) or an error; the error's
// HRESULT is what errors.As finds in it, else protocol.HrFail.
type Handler interface {
	ServeBridge(ctx context.Context, req *Request) (protocol.Response, error)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, req *Request) (protocol.Response, error)

// ServeBridge calls f.
func (f HandlerFunc) ServeBridge(ctx context.Context, req *Request) (protocol.Response, error) {
	return f(ctx, req)
}

// Mux routes requests to handlers by message type.
type Mux struct {
	handlers map[protocol.MessageType]Handler
}

// NewMux returns an empty Mux.
func NewMux() *Mux {
	return &Mux{handlers: make(map[protocol.MessageType]Handler)}
}

// Handle registers h for requests of type t, replacing any earlier one.
// Register before serving: the mux is not safe for registration during use.
func (m *Mux) Handle(t protocol.MessageType, h Handler) { m.handlers[t] = h }

// HandleFunc registers f for requests of type t.
func (m *Mux) HandleFunc(t protocol.MessageType, f HandlerFunc) { m.Handle(t, f) }

// ServeBridge dispatches req; an unregistered type is
// HrVmcomputeUnknownMessage.
func (m *Mux) ServeBridge(ctx context.Context, req *Request) (protocol.Response, error) {
	h, ok := m.handlers[req.Type]
	if !ok {
		return nil, fmt.Errorf("message type %s: %w", req.Type, protocol.HrVmcomputeUnknownMessage)
	}
	return h.ServeBridge(ctx, req)
}
