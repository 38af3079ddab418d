package shim

import (
	"context"
	"net"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Topics of the task events the shim publishes.
const (
	TopicTaskCreate      = "/tasks/create"
	TopicTaskStart       = "/tasks/start"
	TopicTaskExit        = "/tasks/exit"
	TopicTaskOOM         = "/tasks/oom"
	TopicTaskExecAdded   = "/tasks/exec-added"
	TopicTaskExecStarted = "/tasks/exec-started"
	TopicTaskDelete      = "/tasks/delete"
	TopicTaskPaused      = "/tasks/paused"
	TopicTaskResumed     = "/tasks/resumed"
)

// eventQueueDepth bounds the events held while containerd is away.
const eventQueueDepth = 4096

// Publisher forwards task events to containerd's TTRPC events service in
// order. Events queue while containerd is unreachable (it restarts; the
// shim does not) and are sent when it is back.
type Publisher struct {
	addr string
	ns   string

	mu      sync.Mutex
	queue   []*eventsapi.ForwardRequest
	wake    chan struct{}
	closing bool
	done    chan struct{}
	client  *ttrpc.Client
}

// NewPublisher forwards events for namespace ns to the TTRPC socket addr
// (containerd's TTRPC_ADDRESS). Close it to flush and stop.
func NewPublisher(ctx context.Context, addr, ns string) *Publisher {
	p := &Publisher{addr: addr, ns: ns, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go p.run(ctx)
	return p
}

// Publish queues ev under topic. It never blocks; when the queue is full
// the event is dropped and logged.
func (p *Publisher) Publish(ctx context.Context, topic string, ev proto.Message) {
	a, err := typeurl.MarshalAny(ev)
	if err != nil {
		log.G(ctx).WithError(err).WithField("topic", topic).Error("encode event")
		return
	}
	req := &eventsapi.ForwardRequest{Envelope: &types.Envelope{
		Timestamp: timestamppb.Now(),
		Namespace: p.ns,
		Topic:     topic,
		Event:     &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()},
	}}
	p.mu.Lock()
	if len(p.queue) >= eventQueueDepth || p.closing {
		p.mu.Unlock()
		log.G(ctx).WithField("topic", topic).Warn("event queue full or closed; event dropped")
		return
	}
	p.queue = append(p.queue, req)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Publisher) run(ctx context.Context) {
	defer close(p.done)
	backoff := 50 * time.Millisecond
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			closing := p.closing
			p.mu.Unlock()
			if closing {
				p.closeClient()
				return
			}
			<-p.wake
			continue
		}
		req := p.queue[0]
		p.mu.Unlock()
		if err := p.forward(ctx, req); err != nil {
			log.G(ctx).WithError(err).WithField("topic", req.Envelope.Topic).Debug("forward event; retrying")
			p.closeClient()
			select {
			case <-time.After(backoff):
			case <-p.wake:
				// A Close asks for a quick last try; Publish wakes too.
			}
			if backoff < 2*time.Second {
				backoff *= 2
			}
			continue
		}
		backoff = 50 * time.Millisecond
		p.mu.Lock()
		p.queue = p.queue[1:]
		p.mu.Unlock()
	}
}

func (p *Publisher) forward(ctx context.Context, req *eventsapi.ForwardRequest) error {
	if p.client == nil {
		conn, err := net.DialTimeout("unix", p.addr, 2*time.Second)
		if err != nil {
			return err
		}
		p.client = ttrpc.NewClient(conn)
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := eventsapi.NewTTRPCEventsClient(p.client).Forward(fctx, req)
	return err
}

func (p *Publisher) closeClient() {
	if p.client != nil {
		p.client.Close()
		p.client = nil
	}
}

// Close sends what is queued, waiting up to ctx's end, and stops.
func (p *Publisher) Close(ctx context.Context) {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.mu.Lock()
		n := len(p.queue)
		p.mu.Unlock()
		if n > 0 {
			log.G(ctx).WithField("events", n).Warn("shim exiting with events containerd never took")
		}
	}
}
