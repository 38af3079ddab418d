//go:build linux

package plan9

import (
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hugelgupf/p9/p9"
)

// BenchmarkServeRead reads a 64 MiB file through the server over a unix
// socket with 512 KiB reads (the guest's msize), against io.Copy of the
// same file on the host: the server's own cost, without a VM.
func BenchmarkServeRead(b *testing.B) {
	const size = 64 << 20
	dir := b.TempDir()
	big := filepath.Join(dir, "big")
	f, _ := os.Create(big)
	io.CopyN(f, rand.Reader, size)
	f.Close()
	s := New()
	defer s.Close()
	s.Export("d", dir, true)
	cl := serve(b, s)
	top, err := cl.Attach("d")
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 512<<10)
	b.Run("9p", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			_, g, err := top.Walk([]string{"big"})
			if err != nil {
				b.Fatal(err)
			}
			g.Open(p9.ReadOnly)
			for off := int64(0); off < size; {
				n, err := g.ReadAt(buf, off)
				if n == 0 || err != nil {
					b.Fatalf("read at %d: %d, %v", off, n, err)
				}
				off += int64(n)
			}
			g.Close()
		}
	})
	b.Run("local-copy", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			src, _ := os.Open(big)
			io.CopyBuffer(io.Discard, struct{ io.Reader }{src}, buf)
			src.Close()
		}
	})
}
