package dm

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestEncodeTable(t *testing.T) {
	table := []Target{
		{Start: 0, Length: 8, Type: "linear", Params: "/dev/loop0 0"},
		{Start: 8, Length: 16, Type: "linear", Params: "/dev/loop1 2048"},
	}
	b, err := encodeTable("uvmgcs-x", table)
	if err != nil {
		t.Fatal(err)
	}
	h := b.header()
	if h.Version != [3]uint32{4, 0, 0} || h.Data_start != headerSize || h.Target_count != 2 || int(h.Data_size) != len(b) {
		t.Fatalf("header %+v", h)
	}
	if got := cstring(h.Name[:]); got != "uvmgcs-x" {
		t.Fatalf("name %q", got)
	}
	off := headerSize
	for i, want := range table {
		s := b.spec(off)
		if s.Sector_start != want.Start || s.Length != want.Length || cstring(s.Target_type[:]) != want.Type {
			t.Fatalf("target %d: %+v", i, s)
		}
		if got := cstring(b[off+specSize:]); got != want.Params {
			t.Fatalf("target %d params %q", i, got)
		}
		if s.Next%8 != 0 || int(s.Next) < specSize+len(want.Params)+1 {
			t.Fatalf("target %d: next %d", i, s.Next)
		}
		off += int(s.Next)
	}
	if off != len(b) {
		t.Fatalf("targets end at %d of %d", off, len(b))
	}
	for _, bad := range []Target{{Length: 0, Type: "linear"}, {Length: 1, Type: ""}, {Length: 1, Type: strings.Repeat("x", 16)}, {Length: 1, Type: "linear", Params: "a\x00b"}} {
		if _, err := encodeTable("x", []Target{bad}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

// reply builds a kernel reply whose data area holds data.
func reply(data []byte, targets uint32) buffer {
	b := newRequest("", headerSize+len(data))
	copy(b[headerSize:], data)
	h := b.header()
	h.Data_size = uint32(headerSize + len(data))
	h.Target_count = targets
	return b
}

func TestDecodeTargets(t *testing.T) {
	// On the way out Next counts from the first spec.
	var data []byte
	add := func(start, length uint64, typ, params string, last bool) {
		spec := make([]byte, align8(specSize+len(params)+1))
		binary.NativeEndian.PutUint64(spec[0:], start)
		binary.NativeEndian.PutUint64(spec[8:], length)
		copy(spec[24:40], typ)
		copy(spec[specSize:], params)
		if !last {
			binary.NativeEndian.PutUint32(spec[20:], uint32(len(data)+len(spec)))
		}
		data = append(data, spec...)
	}
	add(0, 32768, "verity", "V", false)
	add(32768, 8, "linear", "", true)
	got, err := decodeTargets(reply(data, 2))
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{{0, 32768, "verity", "V"}, {32768, 8, "linear", ""}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := decodeTargets(reply(data[:specSize], 2)); err == nil {
		t.Fatal("a reply shorter than its target count decoded")
	}
}

func TestDecodeNames(t *testing.T) {
	// An empty list comes back as no data (or, from older kernels, an
	// entry with dev 0).
	for _, data := range [][]byte{nil, make([]byte, 16)} {
		if got, err := decodeNames(reply(data, 0)); err != nil || len(got) != 0 {
			t.Fatalf("empty list: %v %v", got, err)
		}
	}
	var data []byte
	for i, name := range []string{"uvmgcs-a", "other"} {
		e := make([]byte, align8(nameListName+len(name)+1)+8) // room for event_nr and flags
		binary.NativeEndian.PutUint64(e, unix.Mkdev(253, uint32(i)))
		if i == 0 {
			binary.NativeEndian.PutUint32(e[nameListNext:], uint32(len(e)))
		}
		copy(e[nameListName:], name)
		data = append(data, e...)
	}
	got, err := decodeNames(reply(data, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != (Device{"uvmgcs-a", 253, 0}) || got[1] != (Device{"other", 253, 1}) {
		t.Fatalf("got %+v", got)
	}
}

func TestDecodeVersions(t *testing.T) {
	var data []byte
	for i, name := range []string{"linear", "verity"} {
		e := make([]byte, align8(versionListName+len(name)+1))
		if i == 0 {
			binary.NativeEndian.PutUint32(e, uint32(len(e)))
		}
		copy(e[versionListName:], name)
		data = append(data, e...)
	}
	got, err := decodeVersions(reply(data, 0))
	if err != nil || strings.Join(got, ",") != "linear,verity" {
		t.Fatalf("got %v %v", got, err)
	}
}

func TestCheckName(t *testing.T) {
	for _, name := range []string{"uvmgcs-pmem0-linear", "a.b_c:d+e"} {
		if err := checkName(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"", ".", "..", "a/b", "a b", strings.Repeat("n", 128), "x\x00"} {
		if err := checkName(name); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: %v", name, err)
		}
	}
}

// TestUnavailable: without a control node or the sysfs entry to make one,
// the Mapper says the kernel has no device-mapper.
func TestUnavailable(t *testing.T) {
	dir := t.TempDir()
	m := New(Config{DevRoot: filepath.Join(dir, "dev"), SysRoot: filepath.Join(dir, "sys")})
	if _, err := m.List(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "dm-mod") {
		t.Fatalf("List: %v", err)
	}
	if _, err := m.Create(t.Context(), "x", []Target{{Length: 1, Type: "zero"}}, true); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Create: %v", err)
	}
	if m.Path("x") != filepath.Join(dir, "dev", "mapper", "uvmgcs-x") {
		t.Fatalf("Path %q", m.Path("x"))
	}
}
