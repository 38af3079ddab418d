package dm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's ioctl structures (include/uapi/linux/dm-ioctl.h).
const (
	headerSize = unix.SizeofDmIoctl      // struct dm_ioctl, in front of every request
	specSize   = unix.SizeofDmTargetSpec // struct dm_target_spec, in front of each target's parameters
	// The kernel takes a request whose major version is its own and
	// whose minor is not newer; 4.0 is understood by every kernel with
	// the commands used here.
	versionMajor = unix.DM_VERSION_MAJOR
	versionMinor = 0
	// Offsets in struct dm_name_list and struct dm_target_versions.
	nameListNext    = 8
	nameListName    = 12
	versionListName = 16
)

// buffer is one ioctl argument: a dm_ioctl header followed by its payload.
// It is backed by uint64s so the structures inside it are aligned.
type buffer []byte

func newBuffer(size int) buffer {
	words := make([]uint64, (size+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
}

func (b buffer) header() *unix.DmIoctl { return (*unix.DmIoctl)(unsafe.Pointer(&b[0])) }

// spec returns the target spec at offset off (a multiple of 8).
func (b buffer) spec(off int) *unix.DmTargetSpec {
	return (*unix.DmTargetSpec)(unsafe.Pointer(&b[off]))
}

// newRequest returns a request for device name with room for size bytes
// in all (at least the header).
func newRequest(name string, size int) buffer {
	b := newBuffer(max(size, headerSize))
	h := b.header()
	h.Version = [3]uint32{versionMajor, versionMinor, 0}
	h.Data_size = uint32(len(b))
	h.Data_start = headerSize
	copy(h.Name[:len(h.Name)-1], name)
	return b
}

// cstring returns b up to its first NUL.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// align8 rounds n up to a multiple of 8.
func align8(n int) int { return (n + 7) &^ 7 }

// encodeTable returns a DM_TABLE_LOAD request for name holding table.
func encodeTable(name string, table []Target) (buffer, error) {
	size := headerSize
	for _, t := range table {
		if err := t.check(); err != nil {
			return nil, err
		}
		size += align8(specSize + len(t.Params) + 1)
	}
	b := newRequest(name, size)
	b.header().Target_count = uint32(len(table))
	off := headerSize
	for _, t := range table {
		n := align8(specSize + len(t.Params) + 1)
		s := b.spec(off)
		s.Sector_start = t.Start
		s.Length = t.Length
		s.Next = uint32(n) // from this spec to the next one
		copy(s.Target_type[:len(s.Target_type)-1], t.Type)
		copy(b[off+specSize:], t.Params)
		off += n
	}
	return b, nil
}

// decodeTargets reads the targets a DM_TABLE_STATUS reply holds. On the
// way out each spec's Next counts from the first spec, not from itself.
func decodeTargets(b buffer) ([]Target, error) {
	h := b.header()
	start, end := int(h.Data_start), int(h.Data_size)
	if end > len(b) || start > end {
		return nil, fmt.Errorf("device-mapper reply: data %d..%d outside a %d-byte buffer", start, end, len(b))
	}
	out := make([]Target, 0, h.Target_count)
	off := start
	for i := 0; i < int(h.Target_count); i++ {
		if off%8 != 0 || off+specSize > end {
			return nil, fmt.Errorf("device-mapper reply: target %d at %d outside %d..%d", i, off, start, end)
		}
		s := b.spec(off)
		out = append(out, Target{
			Start:  s.Sector_start,
			Length: s.Length,
			Type:   cstring(s.Target_type[:]),
			Params: cstring(b[off+specSize : end]),
		})
		off = start + int(s.Next)
	}
	return out, nil
}

// decodeNames reads the devices a DM_LIST_DEVICES reply holds.
func decodeNames(b buffer) ([]Device, error) {
	h := b.header()
	start, end := int(h.Data_start), int(h.Data_size)
	if end > len(b) || start > end {
		return nil, fmt.Errorf("device-mapper reply: data %d..%d outside a %d-byte buffer", start, end, len(b))
	}
	// With no devices the kernel returns no data, or one entry whose
	// dev is 0.
	if end-start < nameListName || binary.NativeEndian.Uint64(b[start:]) == 0 {
		return nil, nil
	}
	var out []Device
	for off := start; ; {
		dev := binary.NativeEndian.Uint64(b[off:])
		out = append(out, Device{
			Name:  cstring(b[off+nameListName : end]),
			Major: unix.Major(dev),
			Minor: unix.Minor(dev),
		})
		next := int(binary.NativeEndian.Uint32(b[off+nameListNext:]))
		if next == 0 {
			return out, nil
		}
		off += next
		if off+nameListName > end {
			return nil, fmt.Errorf("device-mapper reply: device entry at %d outside %d..%d", off, start, end)
		}
	}
}

// decodeVersions reads the target types a DM_LIST_VERSIONS reply names.
func decodeVersions(b buffer) ([]string, error) {
	h := b.header()
	start, end := int(h.Data_start), int(h.Data_size)
	if end > len(b) || start > end {
		return nil, fmt.Errorf("device-mapper reply: data %d..%d outside a %d-byte buffer", start, end, len(b))
	}
	if end-start < versionListName {
		return nil, nil
	}
	var out []string
	for off := start; ; {
		out = append(out, cstring(b[off+versionListName:end]))
		next := int(binary.NativeEndian.Uint32(b[off:]))
		if next == 0 {
			return out, nil
		}
		off += next
		if off+versionListName > end {
			return nil, fmt.Errorf("device-mapper reply: target entry at %d outside %d..%d", off, start, end)
		}
	}
}

// Error is a device-mapper ioctl that failed.
type Error struct {
	Op   string // "create", "load table", "remove", ...
	Name string // the device's full name; "" for requests about none
	Err  error  // the kernel's errno
}

func (e *Error) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("device-mapper %s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("device-mapper %s %s: %v", e.Op, e.Name, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// opName names a device-mapper command in errors.
func opName(cmd uint) string {
	switch cmd {
	case unix.DM_VERSION:
		return "version"
	case unix.DM_LIST_DEVICES:
		return "list devices"
	case unix.DM_LIST_VERSIONS:
		return "list targets"
	case unix.DM_DEV_CREATE:
		return "create"
	case unix.DM_DEV_REMOVE:
		return "remove"
	case unix.DM_DEV_SUSPEND:
		return "resume"
	case unix.DM_TABLE_LOAD:
		return "load table"
	case unix.DM_TABLE_STATUS:
		return "status"
	}
	return fmt.Sprintf("ioctl %#x", cmd)
}

// control is an open /dev/mapper/control.
type control struct{ f *os.File }

func (c *control) Close() error { return c.f.Close() }

// call issues cmd with b and returns the kernel's reply in b.
func (c *control) call(cmd uint, b buffer) error {
	sc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if err := sc.Control(func(fd uintptr) {
		for {
			_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(cmd), uintptr(unsafe.Pointer(&b[0])))
			if errno != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if errno != 0 {
		return &Error{Op: opName(cmd), Name: cstring(b.header().Name[:]), Err: errno}
	}
	return nil
}

// callGrowing issues cmd (a listing or a status) with a buffer that
// doubles until the reply fits, up to maxReply bytes.
func (c *control) callGrowing(cmd uint, name string, flags uint32) (buffer, error) {
	const maxReply = 4 << 20
	for size := 16 << 10; ; size *= 2 {
		b := newRequest(name, size)
		b.header().Flags = flags
		if err := c.call(cmd, b); err != nil {
			return nil, err
		}
		if b.header().Flags&unix.DM_BUFFER_FULL_FLAG == 0 {
			return b, nil
		}
		if size >= maxReply {
			return nil, &Error{Op: opName(cmd), Name: name, Err: errors.New("reply larger than 4 MiB")}
		}
	}
}
