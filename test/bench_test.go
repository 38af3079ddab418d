package test

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/protocol"
)

// BenchmarkBridgeRoundTrip measures one request/response through the real
// agent over unix sockets (NegotiateProtocol: answered by the bridge itself,
// so this is the transport, framing and dispatch cost alone).
func BenchmarkBridgeRoundTrip(b *testing.B) {
	a := startAgent(b)
	ctx := context.Background()
	req := &protocol.NegotiateProtocolRequest{MinimumVersion: 4, MaximumVersion: 4}
	var resp protocol.NegotiateProtocolResponse
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := a.gc.RPC(ctx, protocol.NegotiateProtocol, req, &resp); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// BenchmarkStdioVsCatPipe pushes the same bytes through `cat` in the guest
// (stdin and stdout each a dialed stream) and through a plain local `cat`
// pipe, in the same run, and reports both rates and their ratio.
func BenchmarkStdioVsCatPipe(b *testing.B) {
	const size = 64 << 20
	a := startAgent(b)
	data := make([]byte, 1<<20)
	rand.Read(data)
	ctx := context.Background()
	var gcsTime, catTime time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		p := params("cat")
		p.CreateStdInPipe = true
		start := time.Now()
		proc, err := a.gc.CreateProcess(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		go feed(proc.Stdin(), data, size)
		if n, _ := io.Copy(io.Discard, proc.Stdout()); n != size {
			b.Fatalf("guest cat returned %d bytes", n)
		}
		proc.Wait()
		gcsTime += time.Since(start)
		proc.Close()

		start = time.Now()
		cmd := exec.Command("cat")
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		go feed(in, data, size)
		if n, _ := io.Copy(io.Discard, out); n != size {
			b.Fatalf("local cat returned %d bytes", n)
		}
		cmd.Wait()
		catTime += time.Since(start)
	}
	b.StopTimer()
	mb := float64(size) * float64(b.N) / 1e6
	b.ReportMetric(mb/gcsTime.Seconds(), "gcs-MB/s")
	b.ReportMetric(mb/catTime.Seconds(), "cat-MB/s")
	b.ReportMetric(catTime.Seconds()/gcsTime.Seconds(), "ratio-vs-cat")
}

func feed(w io.WriteCloser, chunk []byte, total int) {
	for sent := 0; sent < total; sent += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			break
		}
	}
	w.Close()
}

// BenchmarkAgentIdleRSS reports the agent's resident memory once connected
// and idle.
func BenchmarkAgentIdleRSS(b *testing.B) {
	a := startAgent(b)
	time.Sleep(500 * time.Millisecond)
	var kib float64
	for range b.N {
		kib = rssKiB(b, a.Pid())
	}
	b.ReportMetric(kib/1024, "RSS-MiB")
}

func rssKiB(tb testing.TB, pid int) float64 {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}
