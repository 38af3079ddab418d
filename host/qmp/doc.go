// Package qmp owns the host's conversation with a QEMU Machine Protocol
// socket: the greeting and capability negotiation, commands from concurrent
// callers matched to their answers by id, asynchronous events fanned out to
// subscribers, and QMP's error answers as a typed *Error.
//
// The wire is JSON objects, one per line, over a stream socket (see
// docs/interop/qmp-spec in QEMU). A Client reads one goroutine's worth of
// lines and never lets a slow event subscriber stall command answers.
package qmp
