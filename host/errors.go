package host

import (
	"context"
	"errors"
	"net"

	"github.com/containerd/errdefs"

	"github.com/uvmgcs/gcs/protocol"
)

// IsNotFound reports whether err says the container or process does not
// exist (or no longer does).
func IsNotFound(err error) bool {
	return errors.Is(err, protocol.HrNotFound) || errors.Is(err, protocol.HrVmcomputeSystemNotFound)
}

// IsAlreadyExists reports whether err says the container already exists.
func IsAlreadyExists(err error) bool {
	return errors.Is(err, protocol.HrVmcomputeSystemAlreadyExists)
}

// IsInvalidState reports whether err says the request does not fit the
// container's state (e.g. exec into a paused container).
func IsInvalidState(err error) bool {
	return errors.Is(err, protocol.HrVmcomputeInvalidState) || errors.Is(err, protocol.HrVmcomputeSystemAlreadyStopped)
}

// IsTimeout reports whether err is a guest-side timeout.
func IsTimeout(err error) bool {
	return errors.Is(err, protocol.HrVmcomputeTimeout)
}

// classes maps the guest's HRESULTs to containerd's error classes.
var classes = []struct {
	hr    protocol.HResult
	class error
}{
	{protocol.HrNotFound, errdefs.ErrNotFound},
	{protocol.HrVmcomputeSystemNotFound, errdefs.ErrNotFound},
	{protocol.HrVmcomputeSystemAlreadyExists, errdefs.ErrAlreadyExists},
	{protocol.HrVmcomputeInvalidState, errdefs.ErrFailedPrecondition},
	{protocol.HrVmcomputeSystemAlreadyStopped, errdefs.ErrFailedPrecondition},
	{protocol.HrInvalidArg, errdefs.ErrInvalidArgument},
	{protocol.HrVmcomputeInvalidJSON, errdefs.ErrInvalidArgument},
	{protocol.HrNotImpl, errdefs.ErrNotImplemented},
	{protocol.HrVmcomputeUnknownMessage, errdefs.ErrNotImplemented},
	{protocol.HrVmcomputeTimeout, context.DeadlineExceeded},
}

// Classify returns err so that errors.Is also matches its
// github.com/containerd/errdefs class: the guest's HRESULTs by kind, and a
// dead connection (net.ErrClosed) as errdefs.ErrUnavailable. Every error
// the library returns from the guest has been through it once.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var c *classified
	if errors.As(err, &c) {
		return err
	}
	for _, m := range classes {
		if errors.Is(err, m.hr) {
			return &classified{err, m.class}
		}
	}
	if errors.Is(err, net.ErrClosed) {
		return &classified{err, errdefs.ErrUnavailable}
	}
	return err
}

// classified is an error that also matches an errdefs class.
type classified struct {
	err   error
	class error
}

func (c *classified) Error() string   { return c.err.Error() }
func (c *classified) Unwrap() []error { return []error{c.err, c.class} }
