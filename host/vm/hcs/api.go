package hcs

import (
	"fmt"

	"github.com/Microsoft/go-winio/pkg/guid"

	"github.com/uvmgcs/gcs/transport"
)

// handle is an HCS compute system handle (HCS_SYSTEM).
type handle uintptr

// callback is a registered notification callback (HCS_CALLBACK).
type callback uintptr

// api is what the driver needs of the Windows host: the vmcompute.dll calls
// it makes, one method each, and the hvsocket listener for a VM. The
// binding (vmcompute_windows.go) is the only implementation outside tests;
// tests use a fake, since vmcompute.dll runs nowhere else.
//
// A method that fails returns an error wrapping the HRESULT as hresult, and
// the result document HCS wrote, which may describe the failure. A call
// HCS completes asynchronously fails with the pending HRESULT (isPending)
// and its completion arrives as a notification.
type api interface {
	CreateComputeSystem(id, configuration string) (h handle, result string, err error)
	OpenComputeSystem(id string) (h handle, result string, err error)
	StartComputeSystem(h handle, options string) (result string, err error)
	ShutdownComputeSystem(h handle, options string) (result string, err error)
	TerminateComputeSystem(h handle, options string) (result string, err error)
	ModifyComputeSystem(h handle, configuration string) (result string, err error)
	GetComputeSystemProperties(h handle, query string) (properties, result string, err error)
	CloseComputeSystem(h handle) error

	// RegisterComputeSystemCallback has HCS call sink for every
	// notification on h until UnregisterComputeSystemCallback. sink runs on
	// an HCS thread and must not block.
	RegisterComputeSystemCallback(h handle, sink func(notification)) (callback, error)
	UnregisterComputeSystemCallback(c callback) error

	// GrantVmAccess lets the worker process of compute system id open
	// the file at path (vmcompute.dll's GrantVmAccess; computecore.dll
	// exports the same call as HcsGrantVmAccess).
	GrantVmAccess(id, path string) error

	// HvSocket is the listener for the VM whose runtime ID is vmID.
	HvSocket(vmID guid.GUID) transport.Listener
}

// notificationType is what an HCS notification reports.
type notificationType uint32

// Compute system notifications (HCS_NOTIFICATIONS). The high four bits are
// flags (notificationFlags), masked off before dispatch.
const (
	notifyInvalid                  notificationType = 0x00000000
	notifySystemExited             notificationType = 0x00000001
	notifySystemCreateCompleted    notificationType = 0x00000002
	notifySystemStartCompleted     notificationType = 0x00000003
	notifySystemPauseCompleted     notificationType = 0x00000004
	notifySystemResumeCompleted    notificationType = 0x00000005
	notifySystemCrashReport        notificationType = 0x00000006
	notifySystemShutdownCompleted  notificationType = 0x0000000A // also "ShutdownFailed"
	notifySystemModifyCompleted    notificationType = 0x0000000C
	notifySystemCrashInitiated     notificationType = 0x0000000D
	notifySystemGuestConnectionEnd notificationType = 0x0000000E
	notifyServiceDisconnect        notificationType = 0x01000000

	notificationFlags notificationType = 0xF0000000
)

func (t notificationType) String() string {
	switch t {
	case notifyInvalid:
		return "Invalid"
	case notifySystemExited:
		return "SystemExited"
	case notifySystemCreateCompleted:
		return "SystemCreateCompleted"
	case notifySystemStartCompleted:
		return "SystemStartCompleted"
	case notifySystemPauseCompleted:
		return "SystemPauseCompleted"
	case notifySystemResumeCompleted:
		return "SystemResumeCompleted"
	case notifySystemCrashReport:
		return "SystemCrashReport"
	case notifySystemShutdownCompleted:
		return "SystemShutdownCompleted"
	case notifySystemModifyCompleted:
		return "SystemModifyCompleted"
	case notifySystemCrashInitiated:
		return "SystemCrashInitiated"
	case notifySystemGuestConnectionEnd:
		return "SystemGuestConnectionClosed"
	case notifyServiceDisconnect:
		return "ServiceDisconnect"
	}
	return fmt.Sprintf("notification %#08x", uint32(t))
}

// notification is one callback from HCS: what happened, the HRESULT of the
// operation it completes (0 for success), and its JSON document.
type notification struct {
	Type   notificationType
	Status uint32
	Data   string
}
