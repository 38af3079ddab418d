package host

import (
	"errors"

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
