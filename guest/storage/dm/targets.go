package dm

import (
	"encoding/hex"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/protocol"
)

// SectorSize is the unit of device-mapper tables.
const SectorSize = 512

// Target is one line of a device-mapper table.
type Target struct {
	Start  uint64 // first sector of the mapped device this line covers
	Length uint64 // sectors it covers
	Type   string // "linear", "verity", ...
	Params string // the target type's own arguments
}

func (t Target) check() error {
	if t.Length == 0 || t.Type == "" || len(t.Type) >= unix.DM_MAX_TYPE_NAME ||
		strings.ContainsRune(t.Type, 0) || strings.ContainsRune(t.Params, 0) {
		return fmt.Errorf("device-mapper target %q (%d sectors, %q): %w", t.Type, t.Length, t.Params, errdefs.ErrInvalidArgument)
	}
	return nil
}

// checkDevice refuses a device path that would not be one argument of a
// table line.
func checkDevice(dev string) error {
	if dev == "" || strings.ContainsAny(dev, " \t\n\x00") {
		return fmt.Errorf("device path %q: %w", dev, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Linear returns the table of a device that is the length bytes of dev
// starting offset bytes in. Both are multiples of SectorSize.
func Linear(dev string, offset, length uint64) ([]Target, error) {
	if err := checkDevice(dev); err != nil {
		return nil, err
	}
	if length == 0 || offset%SectorSize != 0 || length%SectorSize != 0 {
		return nil, fmt.Errorf("linear slice of %d bytes at %d: want a non-empty slice in whole %d-byte sectors: %w",
			length, offset, SectorSize, errdefs.ErrInvalidArgument)
	}
	return []Target{{
		Length: length / SectorSize,
		Type:   "linear",
		Params: fmt.Sprintf("%s %d", dev, offset/SectorSize),
	}}, nil
}

// Verity describes a dm-verity device (format version 1): the first
// DataBlocks blocks of DataDevice, each checked on read against a hash
// tree on HashDevice that starts HashStart hash blocks in and whose root
// is RootDigest.
type Verity struct {
	DataDevice, HashDevice       string
	DataBlockSize, HashBlockSize uint32
	DataBlocks                   uint64
	HashStart                    uint64 // in hash blocks
	Algorithm                    string // a kernel crypto hash ("sha256")
	RootDigest                   string // hex
	Salt                         string // hex; empty for none
}

// digestHexLen is the length of the hex root digest of the hashes the
// host uses; other algorithms are left for the kernel to check.
func digestHexLen(alg string) int {
	switch alg {
	case "sha1":
		return 40
	case "sha256":
		return 64
	case "sha512":
		return 128
	}
	return 0
}

// VerityOf returns the dm-verity device the host describes with info over
// dev, which holds the filesystem (info.Ext4SizeInBytes bytes) with the
// hash tree appended: after a verity superblock of one block when
// info.SuperBlock is set (veritysetup's default), directly otherwise.
func VerityOf(dev string, info *protocol.VerityInfo) (Verity, error) {
	bad := func(format string, args ...any) (Verity, error) {
		return Verity{}, fmt.Errorf("verity info: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	bs := info.BlockSize
	switch {
	case info.Version != 1:
		return bad("version %d, want 1", info.Version)
	case bs < 512 || bs > 4096 || bs&(bs-1) != 0:
		return bad("block size %d, want a power of two from 512 to 4096", bs)
	case info.Ext4SizeInBytes <= 0 || info.Ext4SizeInBytes%int64(bs) != 0:
		return bad("filesystem size %d, want a positive multiple of the block size %d", info.Ext4SizeInBytes, bs)
	}
	v := Verity{
		DataDevice:    dev,
		HashDevice:    dev,
		DataBlockSize: uint32(bs),
		HashBlockSize: uint32(bs),
		DataBlocks:    uint64(info.Ext4SizeInBytes) / uint64(bs),
		Algorithm:     info.Algorithm,
		RootDigest:    strings.ToLower(info.RootDigest),
		Salt:          strings.ToLower(info.Salt),
	}
	v.HashStart = v.DataBlocks
	if info.SuperBlock {
		v.HashStart++
	}
	if v.Salt == "-" {
		v.Salt = ""
	}
	if err := v.check(); err != nil {
		return Verity{}, err
	}
	return v, nil
}

func (v Verity) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("dm-verity: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	if err := checkDevice(v.DataDevice); err != nil {
		return err
	}
	if err := checkDevice(v.HashDevice); err != nil {
		return err
	}
	if v.Algorithm == "" || strings.Trim(v.Algorithm, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return bad("hash algorithm %q", v.Algorithm)
	}
	if _, err := hex.DecodeString(v.RootDigest); err != nil || v.RootDigest == "" {
		return bad("root digest %q is not hex", v.RootDigest)
	}
	if n := digestHexLen(v.Algorithm); n != 0 && len(v.RootDigest) != n {
		return bad("root digest has %d hex digits, %s needs %d", len(v.RootDigest), v.Algorithm, n)
	}
	if _, err := hex.DecodeString(v.Salt); err != nil {
		return bad("salt %q is not hex", v.Salt)
	}
	if v.DataBlocks == 0 || v.DataBlockSize == 0 || v.HashBlockSize == 0 || v.DataBlockSize%SectorSize != 0 {
		return bad("%d data blocks of %d bytes, hash blocks of %d", v.DataBlocks, v.DataBlockSize, v.HashBlockSize)
	}
	return nil
}

// HashDeviceSize is the least size HashDevice must have: up to its first
// hash block, and that block.
func (v Verity) HashDeviceSize() uint64 { return (v.HashStart + 1) * uint64(v.HashBlockSize) }

// Table returns the device's table, one verity line over all data blocks.
func (v Verity) Table() ([]Target, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	salt := v.Salt
	if salt == "" {
		salt = "-"
	}
	return []Target{{
		Length: v.DataBlocks * uint64(v.DataBlockSize) / SectorSize,
		Type:   "verity",
		Params: fmt.Sprintf("1 %s %s %d %d %d %d %s %s %s",
			v.DataDevice, v.HashDevice, v.DataBlockSize, v.HashBlockSize,
			v.DataBlocks, v.HashStart, v.Algorithm, v.RootDigest, salt),
	}}, nil
}
