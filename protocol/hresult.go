package protocol

import (
	"fmt"
)

// HResult is a Windows-style result code as carried in a response's Result.
// It implements error so guest code can wrap one with %w and the bridge can
// recover it with errors.As (guest/bridge maps every other error); the host
// can test a returned error with
// errors.Is(err, protocol.HrNotFound).
type HResult int32

// Result codes in use on the bridge.
const (
	HrOK                            HResult = 0
	HrNotImpl                       HResult = -0x7FFFBFFF // 0x80004001
	HrFail                          HResult = -0x7FFFBFFB // 0x80004005
	HrNotFound                      HResult = -0x7FF8FB70 // 0x80070490 ERROR_NOT_FOUND
	HrInvalidArg                    HResult = -0x7FF8FFA9 // 0x80070057
	HrVmcomputeTimeout              HResult = -0x3FC8FEF7 // 0xC0370109
	HrVmcomputeUnknownMessage       HResult = -0x3FC8FEF5 // 0xC037010B
	HrVmcomputeUnsupportedProtocol  HResult = -0x3FC8FEF4 // 0xC037010C
	HrVmcomputeInvalidJSON          HResult = -0x3FC8FEF3 // 0xC037010D
	HrVmcomputeSystemNotFound       HResult = -0x3FC8FEF2 // 0xC037010E
	HrVmcomputeSystemAlreadyExists  HResult = -0x3FC8FEF1 // 0xC037010F
	HrVmcomputeSystemAlreadyStopped HResult = -0x3FC8FEF0 // 0xC0370110
	HrVmcomputeInvalidState         HResult = -0x7FC8FEFB // 0x80370105
)

var hresultNames = map[HResult]string{
	HrOK:                            "S_OK",
	HrNotImpl:                       "E_NOTIMPL",
	HrFail:                          "E_FAIL",
	HrNotFound:                      "ERROR_NOT_FOUND",
	HrInvalidArg:                    "E_INVALIDARG",
	HrVmcomputeTimeout:              "VMCOMPUTE_TIMEOUT",
	HrVmcomputeUnknownMessage:       "VMCOMPUTE_UNKNOWN_MESSAGE",
	HrVmcomputeUnsupportedProtocol:  "VMCOMPUTE_UNSUPPORTED_PROTOCOL_VERSION",
	HrVmcomputeInvalidJSON:          "VMCOMPUTE_INVALID_JSON",
	HrVmcomputeSystemNotFound:       "VMCOMPUTE_SYSTEM_NOT_FOUND",
	HrVmcomputeSystemAlreadyExists:  "VMCOMPUTE_SYSTEM_ALREADY_EXISTS",
	HrVmcomputeSystemAlreadyStopped: "VMCOMPUTE_SYSTEM_ALREADY_STOPPED",
	HrVmcomputeInvalidState:         "VMCOMPUTE_INVALID_STATE",
}

// Error returns the code's name and hex value, e.g. "E_INVALIDARG (0x80070057)".
func (h HResult) Error() string {
	if n, ok := hresultNames[h]; ok {
		return fmt.Sprintf("%s (0x%08x)", n, uint32(h))
	}
	return fmt.Sprintf("HRESULT 0x%08x", uint32(h))
}

// Failed reports whether h is a failure code.
func (h HResult) Failed() bool { return h < 0 }

// Error is a failed response as the host sees it: the code and the guest's
// message. errors.Is(err, HrX) matches its code.
type Error struct {
	Op      MessageType
	Result  HResult
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("guest %s: %s", e.Op, e.Result)
	}
	return fmt.Sprintf("guest %s: %s: %s", e.Op, e.Message, e.Result)
}

// Unwrap exposes the code to errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Result }
