package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	// HeaderSize is the fixed size of a frame header in bytes.
	HeaderSize = 16
	// MaxFrameSize bounds a whole frame (header and payload) that a reader
	// accepts unless it asks for another bound.
	MaxFrameSize = 1 << 20
	// HcsshimMaxFrameSize is the largest frame hcsshim's host accepts.
	HcsshimMaxFrameSize = 0x10000
)

// ErrFrameSize is wrapped by ReadHeader when a frame's Size is out of bounds.
var ErrFrameSize = errors.New("frame size out of bounds")

// Header is a frame header: the message type, the whole frame's size and the
// sequence id that pairs a response with its request.
type Header struct {
	Type MessageType
	Size uint32
	ID   uint64
}

// Encode writes h into b, which must hold HeaderSize bytes.
func (h Header) Encode(b []byte) {
	binary.LittleEndian.PutUint32(b[0:4], uint32(h.Type))
	binary.LittleEndian.PutUint32(b[4:8], h.Size)
	binary.LittleEndian.PutUint64(b[8:16], h.ID)
}

// DecodeHeader parses a header from b (at least HeaderSize bytes) and checks
// its size against maxSize.
func DecodeHeader(b []byte, maxSize uint32) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("short header: %d bytes: %w", len(b), io.ErrUnexpectedEOF)
	}
	h := Header{
		Type: MessageType(binary.LittleEndian.Uint32(b[0:4])),
		Size: binary.LittleEndian.Uint32(b[4:8]),
		ID:   binary.LittleEndian.Uint64(b[8:16]),
	}
	if h.Size < HeaderSize || h.Size > maxSize {
		return h, fmt.Errorf("frame %s id %d: size %d not in [%d, %d]: %w", h.Type, h.ID, h.Size, HeaderSize, maxSize, ErrFrameSize)
	}
	return h, nil
}

// Reader reads frames from a stream, reusing its header buffer.
type Reader struct {
	r       io.Reader
	maxSize uint32
	hdr     [HeaderSize]byte
}

// NewReader returns a Reader that refuses frames larger than maxSize
// (MaxFrameSize when maxSize is 0).
func NewReader(r io.Reader, maxSize uint32) *Reader {
	if maxSize == 0 {
		maxSize = MaxFrameSize
	}
	return &Reader{r: r, maxSize: maxSize}
}

// Next reads one frame. The payload is a fresh slice the caller may keep.
// A size error leaves the stream unsynchronised: the caller must answer it
// and drop the connection.
func (fr *Reader) Next() (Header, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return Header{}, nil, err
	}
	h, err := DecodeHeader(fr.hdr[:], fr.maxSize)
	if err != nil {
		return h, nil, err
	}
	payload := make([]byte, h.Size-HeaderSize)
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, fmt.Errorf("frame %s id %d payload: %w", h.Type, h.ID, err)
	}
	return h, payload, nil
}

// AppendFrame appends a whole frame (header then payload) to dst.
func AppendFrame(dst []byte, typ MessageType, id uint64, payload []byte) []byte {
	var hdr [HeaderSize]byte
	Header{Type: typ, Size: uint32(HeaderSize + len(payload)), ID: id}.Encode(hdr[:])
	dst = append(dst, hdr[:]...)
	return append(dst, payload...)
}
