package protocol

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestMessageTypeValues(t *testing.T) {
	for _, tc := range []struct {
		typ  MessageType
		want uint32
	}{
		{Create, 0x10100101},
		{Start, 0x10100201},
		{ShutdownGraceful, 0x10100301},
		{ShutdownForced, 0x10100401},
		{ExecuteProcess, 0x10100501},
		{WaitForProcess, 0x10100601},
		{SignalProcess, 0x10100701},
		{ResizeConsole, 0x10100801},
		{GetProperties, 0x10100901},
		{ModifySettings, 0x10100A01},
		{NegotiateProtocol, 0x10100B01},
		{DumpStacks, 0x10100C01},
		{DeleteContainerState, 0x10100D01},
		{ContainerNotification, 0x30100101},
		{ExecuteProcess.Response(), 0x20100501},
		{NegotiateProtocol.Response().Request(), 0x10100B01},
	} {
		if uint32(tc.typ) != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.typ, uint32(tc.typ), tc.want)
		}
	}
	if got := ExecuteProcess.Response().String(); got != "ExecuteProcess response" {
		t.Errorf("String() = %q", got)
	}
	if got := MessageType(0x10109901).String(); got != "0x10109901" {
		t.Errorf("unknown String() = %q", got)
	}
}

func TestHResultValues(t *testing.T) {
	for _, tc := range []struct {
		hr   HResult
		want uint32
	}{
		{HrNotImpl, 0x80004001},
		{HrFail, 0x80004005},
		{HrNotFound, 0x80070490},
		{HrInvalidArg, 0x80070057},
		{HrVmcomputeTimeout, 0xC0370109},
		{HrVmcomputeUnknownMessage, 0xC037010B},
		{HrVmcomputeUnsupportedProtocol, 0xC037010C},
		{HrVmcomputeInvalidJSON, 0xC037010D},
		{HrVmcomputeSystemNotFound, 0xC037010E},
		{HrVmcomputeSystemAlreadyExists, 0xC037010F},
		{HrVmcomputeSystemAlreadyStopped, 0xC0370110},
		{HrVmcomputeInvalidState, 0x80370105},
	} {
		if uint32(tc.hr) != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.hr, uint32(tc.hr), tc.want)
		}
		if !tc.hr.Failed() {
			t.Errorf("%s not a failure", tc.hr)
		}
	}
}

func TestResponseErr(t *testing.T) {
	e := (&ResponseBase{Result: int32(HrVmcomputeTimeout), ErrorMessage: "slow"}).Err(WaitForProcess)
	if !errors.Is(e, HrVmcomputeTimeout) || errors.Is(e, HrFail) {
		t.Errorf("response error %v does not match its code alone", e)
	}
	if (&ResponseBase{}).Err(WaitForProcess) != nil {
		t.Error("success response has an error")
	}
}

func TestReaderBounds(t *testing.T) {
	frame := func(size uint32, payload []byte) []byte {
		var h [HeaderSize]byte
		Header{Type: ExecuteProcess, Size: size, ID: 7}.Encode(h[:])
		return append(h[:], payload...)
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"size below header", frame(15, nil), ErrFrameSize},
		{"size zero", frame(0, nil), ErrFrameSize},
		{"size above bound", frame(1025, make([]byte, 1009)), ErrFrameSize},
		{"size max uint32", frame(0xFFFFFFFF, nil), ErrFrameSize},
		{"truncated payload", frame(40, []byte("{}")), io.ErrUnexpectedEOF},
		{"truncated header", frame(16, nil)[:9], io.ErrUnexpectedEOF},
		{"empty stream", nil, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := NewReader(bytes.NewReader(tc.in), 1024).Next()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
	// A frame at exactly the bound is accepted.
	in := AppendFrame(nil, Start, 3, make([]byte, 1024-HeaderSize))
	h, p, err := NewReader(bytes.NewReader(in), 1024).Next()
	if err != nil || h.Size != 1024 || len(p) != 1024-HeaderSize || h.ID != 3 || h.Type != Start {
		t.Fatalf("frame at the bound: %+v, %d bytes, %v", h, len(p), err)
	}
}

func TestReaderSequence(t *testing.T) {
	var stream []byte
	for i := range 3 {
		stream = AppendFrame(stream, WaitForProcess, uint64(i+1), []byte(`{"ProcessId":1}`))
	}
	r := NewReader(bytes.NewReader(stream), 0)
	for i := range 3 {
		h, p, err := r.Next()
		if err != nil || h.ID != uint64(i+1) || string(p) != `{"ProcessId":1}` {
			t.Fatalf("frame %d: %+v %q %v", i, h, p, err)
		}
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("after last frame: %v", err)
	}
}

// FuzzReader feeds arbitrary peer bytes to the frame reader: it must never
// panic, never return a payload inconsistent with the header, and never
// accept a size outside the bound.
func FuzzReader(f *testing.F) {
	f.Add(AppendFrame(nil, NegotiateProtocol, 1, []byte(`{"MinimumVersion":4,"MaximumVersion":4}`)))
	f.Add([]byte{1, 2, 3})
	f.Add(frameBytes(0x10100501, 0xFFFFFFFF, 1))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 4096)
		for {
			h, p, err := r.Next()
			if err != nil {
				return
			}
			if h.Size < HeaderSize || h.Size > 4096 || int(h.Size)-HeaderSize != len(p) {
				t.Fatalf("accepted %+v with %d payload bytes", h, len(p))
			}
		}
	})
}

func frameBytes(typ, size uint32, id uint64) []byte {
	var h [HeaderSize]byte
	Header{Type: MessageType(typ), Size: size, ID: id}.Encode(h[:])
	return h[:]
}
