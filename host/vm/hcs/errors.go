package hcs

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/uvmgcs/gcs/protocol"
)

// hresult is the HRESULT a vmcompute.dll call returned, as the api layer
// reports it. The driver turns it into an *Error naming the call.
type hresult uint32

func (h hresult) Error() string { return fmt.Sprintf("HRESULT %#08x", uint32(h)) }

// HRESULTs the driver acts on. vmcompute.dll returns the 0xC037xxxx forms;
// winerror.h (and computecore.dll) define HCS_E_* as 0x8037xxxx: both are
// recognised.
const (
	hrOperationPending         uint32 = 0xC0370103 // vmcompute: completes by notification
	hrOperationPendingCore     uint32 = 0x80370117 // HCS_E_OPERATION_PENDING
	hrSystemNotFound           uint32 = 0xC037010E // HCS_E_SYSTEM_NOT_FOUND (vmcompute)
	hrSystemNotFoundCore       uint32 = 0x8037010E
	hrSystemAlreadyStopped     uint32 = 0xC0370110 // HCS_E_SYSTEM_ALREADY_STOPPED (vmcompute)
	hrSystemAlreadyStoppedCore uint32 = 0x80370110
)

// protocolResult maps HCS's codes onto the protocol's HResult values that
// mean the same, so errors.Is(err, protocol.HrVmcomputeSystemNotFound)
// holds for an *Error from HCS as it does for one from the guest.
func protocolResult(code uint32) (protocol.HResult, bool) {
	switch code {
	case hrSystemNotFound, hrSystemNotFoundCore:
		return protocol.HrVmcomputeSystemNotFound, true
	case 0xC037010F, 0x8037010F: // HCS_E_SYSTEM_ALREADY_EXISTS
		return protocol.HrVmcomputeSystemAlreadyExists, true
	case hrSystemAlreadyStopped, hrSystemAlreadyStoppedCore:
		return protocol.HrVmcomputeSystemAlreadyStopped, true
	case 0xC0370105, 0x80370105: // HCS_E_INVALID_STATE
		return protocol.HrVmcomputeInvalidState, true
	case 0xC0370109, 0x80370109: // HCS_E_CONNECTION_TIMEOUT
		return protocol.HrVmcomputeTimeout, true
	case 0xC037010B, 0x8037010B: // HCS_E_UNKNOWN_MESSAGE
		return protocol.HrVmcomputeUnknownMessage, true
	case 0xC037010C, 0x8037010C: // HCS_E_UNSUPPORTED_PROTOCOL_VERSION
		return protocol.HrVmcomputeUnsupportedProtocol, true
	case 0xC037010D, 0x8037010D: // HCS_E_INVALID_JSON
		return protocol.HrVmcomputeInvalidJSON, true
	case 0x80070490: // HRESULT_FROM_WIN32(ERROR_NOT_FOUND)
		return protocol.HrNotFound, true
	case 0x80070057: // E_INVALIDARG
		return protocol.HrInvalidArg, true
	case 0x80004001: // E_NOTIMPL
		return protocol.HrNotImpl, true
	case 0x80004005: // E_FAIL
		return protocol.HrFail, true
	}
	return 0, false
}

// Error is a failed HCS operation: the call, the compute system, the HRESULT
// and HCS's own message when its result document carried one. It unwraps
// to the matching protocol.HResult where there is one, so callers test
// errors.Is(err, protocol.HrVmcomputeSystemNotFound) and never compare
// strings; Code is there for the rest.
type Error struct {
	Op      string // the vmcompute.dll call, or the notification that failed it
	ID      string // the compute system
	Code    uint32 // the HRESULT
	Message string // from HCS's result document, if any
}

func (e *Error) Error() string {
	s := fmt.Sprintf("hcs %s %s: HRESULT %#08x", e.Op, e.ID, e.Code)
	if hr, ok := protocolResult(e.Code); ok {
		s = fmt.Sprintf("hcs %s %s: %s", e.Op, e.ID, hr)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap exposes the matching protocol.HResult to errors.Is and errors.As.
func (e *Error) Unwrap() error {
	if hr, ok := protocolResult(e.Code); ok {
		return hr
	}
	return nil
}

// callError turns what an api call returned into the driver's error: an
// *Error for an HRESULT, err wrapped with the call's name otherwise (a
// missing DLL or export).
func callError(op, id string, err error, result string) error {
	if err == nil {
		return nil
	}
	var hr hresult
	if errors.As(err, &hr) {
		return &Error{Op: op, ID: id, Code: uint32(hr), Message: resultMessage(result)}
	}
	return fmt.Errorf("hcs %s %s: %w", op, id, err)
}

// resultMessage is the ErrorMessage of an HCS result document, or the
// document itself when it is not one.
func resultMessage(result string) string {
	if result == "" {
		return ""
	}
	var doc struct {
		ErrorMessage string `json:"ErrorMessage"`
	}
	if err := json.Unmarshal([]byte(result), &doc); err == nil {
		return doc.ErrorMessage
	}
	return result
}

// codeOf is the HRESULT err carries, 0 if none.
func codeOf(err error) uint32 {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var hr hresult
	if errors.As(err, &hr) {
		return uint32(hr)
	}
	return 0
}

// isPending reports whether err says the call completes by notification.
func isPending(err error) bool {
	c := codeOf(err)
	return c == hrOperationPending || c == hrOperationPendingCore
}

// isGone reports whether err says the compute system is already stopped or
// gone: success for anything tearing it down.
func isGone(err error) bool {
	switch codeOf(err) {
	case hrSystemNotFound, hrSystemNotFoundCore, hrSystemAlreadyStopped, hrSystemAlreadyStoppedCore:
		return true
	}
	return false
}
