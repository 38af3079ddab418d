package dm

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/protocol"
)

func TestLinear(t *testing.T) {
	table, err := Linear("/dev/pmem0", 8<<20, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Target{Length: 32768, Type: "linear", Params: "/dev/pmem0 16384"}); len(table) != 1 || table[0] != want {
		t.Fatalf("table %+v, want %+v", table, want)
	}
	for _, tc := range []struct {
		dev            string
		offset, length uint64
	}{{"/dev/pmem0", 0, 0}, {"/dev/pmem0", 100, 512}, {"/dev/pmem0", 0, 1000}, {"/dev/a b", 0, 512}, {"", 0, 512}} {
		if _, err := Linear(tc.dev, tc.offset, tc.length); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%+v: %v", tc, err)
		}
	}
}

func goodInfo() *protocol.VerityInfo {
	return &protocol.VerityInfo{
		Ext4SizeInBytes: 16 << 20, Version: 1, Algorithm: "sha256", SuperBlock: true, BlockSize: 4096,
		RootDigest: strings.Repeat("ab", 32), Salt: strings.Repeat("CD", 32),
	}
}

func TestVerityTable(t *testing.T) {
	v, err := VerityOf("/dev/mapper/uvmgcs-l", goodInfo())
	if err != nil {
		t.Fatal(err)
	}
	table, err := v.Table()
	if err != nil {
		t.Fatal(err)
	}
	want := Target{Length: 32768, Type: "verity", Params: "1 /dev/mapper/uvmgcs-l /dev/mapper/uvmgcs-l 4096 4096 4096 4097 sha256 " +
		strings.Repeat("ab", 32) + " " + strings.Repeat("cd", 32)}
	if len(table) != 1 || table[0] != want {
		t.Fatalf("table\n%+v\nwant\n%+v", table, want)
	}
	if v.HashDeviceSize() != (4097+1)*4096 {
		t.Fatalf("hash device size %d", v.HashDeviceSize())
	}

	// Without a verity superblock the tree starts right after the data;
	// without a salt the table says "-".
	info := goodInfo()
	info.SuperBlock, info.Salt = false, ""
	v, err = VerityOf("/dev/sdb", info)
	if err != nil {
		t.Fatal(err)
	}
	table, _ = v.Table()
	if !strings.HasSuffix(table[0].Params, " 4096 4096 sha256 "+strings.Repeat("ab", 32)+" -") {
		t.Fatalf("params %q", table[0].Params)
	}
}

func TestVerityRefusals(t *testing.T) {
	for name, change := range map[string]func(*protocol.VerityInfo){
		"version 0":          func(i *protocol.VerityInfo) { i.Version = 0 },
		"version 2":          func(i *protocol.VerityInfo) { i.Version = 2 },
		"block size 0":       func(i *protocol.VerityInfo) { i.BlockSize = 0 },
		"block size 3000":    func(i *protocol.VerityInfo) { i.BlockSize = 3000 },
		"block size 8192":    func(i *protocol.VerityInfo) { i.BlockSize = 8192 },
		"no data":            func(i *protocol.VerityInfo) { i.Ext4SizeInBytes = 0 },
		"partial block":      func(i *protocol.VerityInfo) { i.Ext4SizeInBytes = 4096*3 + 512 },
		"no algorithm":       func(i *protocol.VerityInfo) { i.Algorithm = "" },
		"algorithm injected": func(i *protocol.VerityInfo) { i.Algorithm = "sha256 1 restart_on_corruption" },
		"digest not hex":     func(i *protocol.VerityInfo) { i.RootDigest = strings.Repeat("zz", 32) },
		"digest short":       func(i *protocol.VerityInfo) { i.RootDigest = "abcd" },
		"digest empty":       func(i *protocol.VerityInfo) { i.RootDigest = "" },
		"salt injected":      func(i *protocol.VerityInfo) { i.Salt = "ab 1 ignore_corruption" },
	} {
		info := goodInfo()
		change(info)
		if _, err := VerityOf("/dev/sdb", info); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := VerityOf("/dev/a b", goodInfo()); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("device with a space: %v", err)
	}
	// An algorithm the guest does not know the digest length of is left
	// to the kernel.
	info := goodInfo()
	info.Algorithm, info.RootDigest = "blake2b-256", "00"
	if _, err := VerityOf("/dev/sdb", info); err != nil {
		t.Errorf("blake2b-256: %v", err)
	}
}
