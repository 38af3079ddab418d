package memtrim

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestTrimAfterQuiet: touches closer together than the quiet spell give
// one trim, after the last of them; a touch after it arms another.
func TestTrimAfterQuiet(t *testing.T) {
	var n atomic.Int32
	done := make(chan time.Time, 4)
	tr := New(50*time.Millisecond, func() { n.Add(1); done <- time.Now() })
	defer tr.Stop()
	var last time.Time
	for range 10 {
		last = time.Now()
		tr.Touch()
		time.Sleep(10 * time.Millisecond)
	}
	at := <-done
	if at.Sub(last) < 50*time.Millisecond {
		t.Errorf("trimmed %v after the last touch, before the quiet spell", at.Sub(last))
	}
	time.Sleep(100 * time.Millisecond)
	if got := n.Load(); got != 1 {
		t.Fatalf("%d trims for one burst, want 1", got)
	}
	tr.Touch()
	<-done
	if got := n.Load(); got != 2 {
		t.Fatalf("%d trims after a second burst, want 2", got)
	}
}

// TestStop: a pending trim is cancelled and no touch arms another.
func TestStop(t *testing.T) {
	var n atomic.Int32
	tr := New(20*time.Millisecond, func() { n.Add(1) })
	tr.Touch()
	tr.Stop()
	tr.Touch()
	time.Sleep(80 * time.Millisecond)
	if got := n.Load(); got != 0 {
		t.Fatalf("%d trims after Stop, want 0", got)
	}
	var zero *Trimmer
	zero.Touch() // nil does nothing
	zero.Stop()
	(&Trimmer{}).Touch()
}
