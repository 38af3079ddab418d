// Package plan9test holds what the tests of 9p shares have in common: a
// directory of test data with its checksums, and a count of the server's
// goroutines, which must drop to zero once a share is released.
package plan9test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// BigSize is the size of the large file Populate writes.
const BigSize = 64 << 20

// SmallFiles is how many small files Populate writes.
const SmallFiles = 10000

// Data says what Populate wrote.
type Data struct {
	BigName   string // a BigSize file of random bytes
	BigSHA256 string // its checksum, hex
	ManyDir   string // a directory of SmallFiles files; file i holds "i\n"
}

// Populate writes the big file and the directory of small files into dir.
func Populate(tb testing.TB, dir string) Data {
	tb.Helper()
	d := Data{BigName: "big", ManyDir: "many"}
	f, err := os.Create(filepath.Join(dir, d.BigName))
	if err != nil {
		tb.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, BigSize); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	d.BigSHA256 = hex.EncodeToString(h.Sum(nil))
	many := filepath.Join(dir, d.ManyDir)
	if err := os.Mkdir(many, 0o755); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < SmallFiles; i++ {
		if err := os.WriteFile(filepath.Join(many, fmt.Sprint(i)), []byte(fmt.Sprintf("%d\n", i)), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return d
}

// ServerGoroutines counts the goroutines running 9p server code.
func ServerGoroutines() int { return len(serverGoroutines()) }

func serverGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/hugelgupf/p9/p9.(*connState)") || strings.Contains(g, "uvmgcs/gcs/host/plan9.(*Server)") {
			found = append(found, g)
		}
	}
	return found
}

// WaitNoServerGoroutines fails tb unless the server's goroutines are all
// gone within a few seconds (they end as their connections close).
func WaitNoServerGoroutines(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for ServerGoroutines() > 0 {
		if time.Now().After(deadline) {
			left := serverGoroutines()
			tb.Fatalf("%d 9p server goroutines left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
