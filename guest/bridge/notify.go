package bridge

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
)

// defaultMaxNotifications bounds the notifications held while no host is
// connected; past it the oldest are dropped (and logged).
const defaultMaxNotifications = 4096

// notifyQueue holds container notifications until a connection has written
// them. An entry leaves the queue only after its write succeeded, so a
// notification raised while disconnected, or lost with a dying connection,
// goes out on the next one.
type notifyQueue struct {
	mu     sync.Mutex
	items  []queuedNote
	next   uint64
	max    int
	signal chan struct{}
}

type queuedNote struct {
	seq  uint64
	note protocol.ContainerNotificationMessage
}

func newNotifyQueue(max int) *notifyQueue {
	return &notifyQueue{max: max, signal: make(chan struct{}, 1)}
}

func (q *notifyQueue) push(ctx context.Context, n protocol.ContainerNotificationMessage) {
	q.mu.Lock()
	if len(q.items) >= q.max {
		log.G(ctx).WithField(log.FieldContainerID, q.items[0].note.ContainerID).Error("notification queue full; dropping the oldest")
		q.items = q.items[1:]
	}
	q.next++
	q.items = append(q.items, queuedNote{seq: q.next, note: n})
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *notifyQueue) peek() (queuedNote, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return queuedNote{}, false
	}
	return q.items[0], true
}

// done removes the entry with seq once it has been written.
func (q *notifyQueue) done(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) > 0 && q.items[0].seq == seq {
		q.items = q.items[1:]
	}
}

// notifyLoop writes queued notifications, in order, once the connection is
// negotiated.
func (c *connection) notifyLoop(ctx context.Context) {
	select {
	case <-c.negotiated:
	case <-ctx.Done():
		return
	}
	q := c.b.notes
	for {
		item, ok := q.peek()
		if !ok {
			select {
			case <-q.signal:
				continue
			case <-ctx.Done():
				return
			}
		}
		body, err := json.Marshal(&item.note)
		if err != nil {
			log.G(ctx).WithError(err).Error("dropping a notification that does not encode")
			q.done(item.seq)
			continue
		}
		if err := c.send(protocol.AppendFrame(nil, protocol.ContainerNotification, 0, body)); err != nil {
			return
		}
		q.done(item.seq)
	}
}
