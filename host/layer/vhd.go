package layer

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"time"
)

// HCS attaches SCSI disks as VHD or VHDX files. A fixed VHD is the raw
// disk image followed by a 512-byte footer (Microsoft's Virtual Hard Disk
// Image Format Specification), so an ext4 image becomes one by appending
// the footer, and the guest sees the image's bytes unchanged.

const (
	vhdFooterSize = 512
	vhdSector     = 512
)

// IsVHD reports whether path names a VHD or VHDX file by its extension.
func IsVHD(path string) bool {
	p := strings.ToLower(path)
	return strings.HasSuffix(p, ".vhd") || strings.HasSuffix(p, ".vhdx")
}

// AppendVHDFooter makes the raw image at path a fixed VHD of its current
// size, which must be a whole number of 512-byte sectors.
func AppendVHDFooter(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size <= 0 || size%vhdSector != 0 {
		return fmt.Errorf("vhd %s: size %d is not a whole number of %d-byte sectors", path, size, vhdSector)
	}
	footer, err := vhdFooter(uint64(size), time.Now())
	if err != nil {
		return fmt.Errorf("vhd %s: %w", path, err)
	}
	if _, err := f.WriteAt(footer, size); err != nil {
		return fmt.Errorf("vhd %s: %w", path, err)
	}
	return f.Close()
}

// BlankVHD writes a fixed VHD of sizeMiB holding zeros: a disk the guest
// formats (MappedVirtualDisk.EnsureFilesystem). Hyper-V refuses sparse
// VHD files; Windows does not make this one sparse.
func BlankVHD(path string, sizeMiB int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(sizeMiB << 20); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	if err := AppendVHDFooter(path); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// vhdFooter is the footer of a fixed VHD of size bytes.
func vhdFooter(size uint64, now time.Time) ([]byte, error) {
	b := make([]byte, vhdFooterSize)
	be := binary.BigEndian
	copy(b[0:8], "conectix")
	be.PutUint32(b[8:], 2)                  // features: the reserved bit, always set
	be.PutUint32(b[12:], 0x00010000)        // file format version 1.0
	be.PutUint64(b[16:], ^uint64(0))        // data offset: none, a fixed disk
	be.PutUint32(b[24:], vhdTimestamp(now)) // seconds since 2000-01-01 UTC
	copy(b[28:32], "uvmg")                  // creator application
	be.PutUint32(b[32:], 0x00010000)        // creator version
	copy(b[36:40], "Wi2k")                  // creator host OS
	be.PutUint64(b[40:], size)              // original size
	be.PutUint64(b[48:], size)              // current size
	c, h, s := vhdGeometry(size / vhdSector)
	be.PutUint16(b[56:], c)
	b[58], b[59] = h, s
	be.PutUint32(b[60:], 2) // disk type: fixed
	if _, err := rand.Read(b[68:84]); err != nil {
		return nil, fmt.Errorf("unique id: %w", err)
	}
	be.PutUint32(b[64:], vhdChecksum(b))
	return b, nil
}

// vhdTimestamp is now in seconds since 2000-01-01 UTC, where VHD time
// stamps count from.
func vhdTimestamp(now time.Time) uint32 {
	if d := now.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)); d > 0 && d/time.Second < 1<<32 {
		return uint32(d / time.Second)
	}
	return 0
}

// vhdChecksum is the ones' complement of the sum of the footer's bytes,
// its checksum field counted as zero.
func vhdChecksum(footer []byte) uint32 {
	var sum uint32
	for i, c := range footer {
		if i < 64 || i >= 68 {
			sum += uint32(c)
		}
	}
	return ^sum
}

// vhdGeometry is the cylinders, heads and sectors per track the VHD
// specification derives from a disk's sector count.
func vhdGeometry(sectors uint64) (cylinders uint16, heads, sectorsPerTrack uint8) {
	const maxSectors = 65535 * 16 * 255
	if sectors > maxSectors {
		sectors = maxSectors
	}
	var spt, hd, cth uint64
	if sectors >= 65535*16*63 {
		spt, hd = 255, 16
		cth = sectors / spt
	} else {
		spt = 17
		cth = sectors / spt
		hd = max((cth+1023)/1024, 4)
		if cth >= hd*1024 || hd > 16 {
			spt, hd = 31, 16
			cth = sectors / spt
		}
		if cth >= hd*1024 {
			spt, hd = 63, 16
			cth = sectors / spt
		}
	}
	return uint16(cth / hd), uint8(hd), uint8(spt)
}
