// Package bridge owns the guest end of the bridge connection: dialing the
// host (and redialing after a drop), the frame read loop, an http-like Mux
// that routes each request by message type to a Handler running in its own
// goroutine, the single writer, protocol negotiation and its gating, the
// queue of container notifications that survives reconnects, the
// ResourceMux that routes ModifySettings on the utility VM by resource type
// (one decode, per-type middleware), and the one place where an error
// becomes an HRESULT (resultOf).
//
// Handlers own only their resource: they get a decoded *Request and return a
// response body or an error: one wrapping a protocol.HResult, or a plain
// error whose containerd errdefs kind picks the code.
package bridge
