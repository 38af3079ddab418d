package shim

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/emptypb"
)

// forwardSink is containerd's TTRPC events service as far as a shim sees
// it: it records what was forwarded.
type forwardSink struct {
	mu     sync.Mutex
	topics []string
	ids    []string
}

func (f *forwardSink) Forward(ctx context.Context, r *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	ev, err := typeurl.UnmarshalAny(r.Envelope.Event)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.topics = append(f.topics, r.Envelope.Topic)
	if e, ok := ev.(*eventstypes.TaskExit); ok {
		f.ids = append(f.ids, e.ContainerID)
	}
	return &emptypb.Empty{}, nil
}

// waitFor returns the exits delivered once n distinct ones have arrived.
// Delivery is at least once: an event whose answer was lost when
// containerd went away is sent again, so a repeat of the event just before
// is folded; anything else out of order stays for the caller to see.
func (f *forwardSink) waitFor(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		f.mu.Lock()
		ids = ids[:0]
		for _, id := range f.ids {
			if len(ids) == 0 || ids[len(ids)-1] != id {
				ids = append(ids, id)
			}
		}
		f.mu.Unlock()
		if len(ids) >= n {
			return ids
		}
	}
	t.Fatalf("%d distinct events arrived (%v), want %d", len(ids), ids, n)
	return nil
}

func serveEvents(t *testing.T, sock string, sink *forwardSink) func() {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	eventsapi.RegisterTTRPCEventsService(s, sink)
	go s.Serve(context.Background(), l)
	return func() { s.Close() }
}

// TestPublisherOutlivesContainerd: events published while containerd is
// away are delivered, in order, when it comes back, and again after it
// restarts.
func TestPublisherOutlivesContainerd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "c.sock.ttrpc")
	ctx := context.Background()
	p := NewPublisher(ctx, sock, "ns")
	defer p.Close(ctx)
	exit := func(id string) { p.Publish(ctx, TopicTaskExit, &eventstypes.TaskExit{ContainerID: id}) }

	exit("a") // nobody listens yet
	exit("b")
	sink := &forwardSink{}
	stop := serveEvents(t, sock, sink)
	if ids := sink.waitFor(t, 2); ids[0] != "a" || ids[1] != "b" {
		t.Fatalf("delivered %v, want [a b]", ids)
	}
	stop() // containerd restarts
	exit("c")
	time.Sleep(100 * time.Millisecond)
	stop = serveEvents(t, sock, sink)
	defer stop()
	if ids := sink.waitFor(t, 3); ids[2] != "c" {
		t.Fatalf("delivered %v, want c last", ids)
	}
	if sink.topics[0] != TopicTaskExit {
		t.Fatalf("topic %q", sink.topics[0])
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	exit("d")
	p.Close(cctx) // flushes
	if ids := sink.waitFor(t, 4); ids[3] != "d" {
		t.Fatalf("after Close: %v", ids)
	}
}
