package hcs

import (
	"errors"
	"fmt"
	"testing"

	"github.com/uvmgcs/gcs/protocol"
)

func TestErrorMapsToProtocol(t *testing.T) {
	for _, tc := range []struct {
		code uint32
		want protocol.HResult
	}{
		{0xC037010E, protocol.HrVmcomputeSystemNotFound},
		{0x8037010E, protocol.HrVmcomputeSystemNotFound},
		{0xC037010F, protocol.HrVmcomputeSystemAlreadyExists},
		{0xC0370110, protocol.HrVmcomputeSystemAlreadyStopped},
		{0xC0370105, protocol.HrVmcomputeInvalidState},
		{0x80370105, protocol.HrVmcomputeInvalidState},
		{0xC0370109, protocol.HrVmcomputeTimeout},
		{0xC037010B, protocol.HrVmcomputeUnknownMessage},
		{0xC037010C, protocol.HrVmcomputeUnsupportedProtocol},
		{0xC037010D, protocol.HrVmcomputeInvalidJSON},
		{0x80070490, protocol.HrNotFound},
		{0x80070057, protocol.HrInvalidArg},
		{0x80004001, protocol.HrNotImpl},
		{0x80004005, protocol.HrFail},
	} {
		err := callError("HcsX", "vm", hresult(tc.code), "")
		if !errors.Is(err, tc.want) {
			t.Errorf("%#08x: %v is not %v", tc.code, err, tc.want)
		}
		if uint32(tc.want) != tc.code && uint32(tc.want)&0xFFFF != tc.code&0xFFFF {
			t.Errorf("%#08x maps to %v, a different code", tc.code, tc.want)
		}
		// Wrapped again, still found.
		if !errors.Is(fmt.Errorf("outer: %w", err), tc.want) {
			t.Errorf("%#08x: lost when wrapped", tc.code)
		}
	}
}

func TestErrorUnknownCode(t *testing.T) {
	err := callError("HcsStartComputeSystem", "vm1", hresult(0x80370106), `{"Error":-2143878906,"ErrorMessage":"The virtual machine stopped unexpectedly."}`)
	var he *Error
	if !errors.As(err, &he) {
		t.Fatalf("%v is not an *Error", err)
	}
	if he.Code != 0x80370106 || he.Op != "HcsStartComputeSystem" || he.ID != "vm1" {
		t.Errorf("%+v", he)
	}
	var hr protocol.HResult
	if errors.As(err, &hr) {
		t.Errorf("unknown code unwraps to %v", hr)
	}
	want := "hcs HcsStartComputeSystem vm1: HRESULT 0x80370106: The virtual machine stopped unexpectedly."
	if err.Error() != want {
		t.Errorf("%q\nwant %q", err.Error(), want)
	}
	known := callError("HcsOpenComputeSystem", "vm1", hresult(0xC037010E), "")
	if want := "hcs HcsOpenComputeSystem vm1: VMCOMPUTE_SYSTEM_NOT_FOUND (0xc037010e)"; known.Error() != want {
		t.Errorf("%q\nwant %q", known.Error(), want)
	}
}

func TestErrorNotAnHRESULT(t *testing.T) {
	dll := errors.New("Failed to load vmcompute.dll")
	err := callError("HcsCreateComputeSystem", "vm1", dll, "")
	if !errors.Is(err, dll) {
		t.Errorf("%v does not wrap the cause", err)
	}
	var he *Error
	if errors.As(err, &he) {
		t.Errorf("%v is an *Error", err)
	}
	if callError("x", "y", nil, "ignored") != nil {
		t.Error("nil error maps to non-nil")
	}
}

func TestResultMessage(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "",
		`{"Error":-1,"ErrorMessage":"m"}`: "m",
		`{"Error":-1}`:                    "",
		"not json":                        "not json",
	} {
		if got := resultMessage(in); got != want {
			t.Errorf("resultMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPendingAndGone(t *testing.T) {
	for _, c := range []uint32{0xC0370103, 0x80370117} {
		if !isPending(hresult(c)) || !isPending(callError("op", "id", hresult(c), "")) {
			t.Errorf("%#08x is not pending", c)
		}
	}
	for _, c := range []uint32{0xC037010E, 0x8037010E, 0xC0370110, 0x80370110} {
		if !isGone(callError("op", "id", hresult(c), "")) {
			t.Errorf("%#08x is not gone", c)
		}
	}
	for _, err := range []error{nil, errors.New("x"), hresult(0x80004005)} {
		if isPending(err) || isGone(err) {
			t.Errorf("%v is pending or gone", err)
		}
	}
}

// Notification flags are masked off, and unknown types still print.
func TestNotificationType(t *testing.T) {
	exited := make(chan notification, 1)
	e := newEvents(func(n notification) { exited <- n })
	e.deliver(notification{Type: notifySystemExited | 0x80000000})
	if n := <-exited; n.Type != notifySystemExited {
		t.Errorf("exit delivered as %v", n.Type)
	}
	if s := notificationType(0x42).String(); s != "notification 0x00000042" {
		t.Errorf("%q", s)
	}
}
