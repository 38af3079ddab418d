package bridge

import (
	"context"
	"errors"

	"github.com/containerd/errdefs"

	"github.com/uvmgcs/gcs/protocol"
)

// resultOf maps a handler's error to the HRESULT its response carries. It
// is the one place the guest's errors meet the wire: an error wrapping a
// protocol.HResult carries that code; the guest's domain packages return
// plain errors whose kind (containerd's errdefs, a context deadline) picks
// the code; anything else is HrFail.
func resultOf(err error) protocol.HResult {
	var hr protocol.HResult
	switch {
	case err == nil:
		return protocol.HrOK
	case errors.As(err, &hr) && hr.Failed():
		return hr
	case errdefs.IsInvalidArgument(err):
		return protocol.HrInvalidArg
	case errdefs.IsNotImplemented(err):
		return protocol.HrNotImpl
	case errdefs.IsFailedPrecondition(err):
		return protocol.HrVmcomputeInvalidState
	case errdefs.IsNotFound(err):
		return protocol.HrNotFound
	case errdefs.IsAlreadyExists(err):
		return protocol.HrVmcomputeSystemAlreadyExists
	case errors.Is(err, context.DeadlineExceeded):
		return protocol.HrVmcomputeTimeout
	}
	return protocol.HrFail
}
