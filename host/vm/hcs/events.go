package hcs

import (
	"context"
	"errors"
	"sync"
)

// eventQueue is how many undelivered notifications of one type are kept;
// the driver waits for one operation of a kind at a time.
const eventQueue = 4

// errExited is what a wait gets when the compute system exits first.
var errExited = errors.New("the compute system exited")

// events receives one compute system's notifications on HCS's threads and
// hands each to whoever waits for its type. A notification that arrives
// before its waiter is kept, so a completion can race ahead of the wait for
// it. SystemExited (or the service going away) is the end: it runs onExit
// once and fails every wait from then on.
type events struct {
	onExit func(notification)

	mu     sync.Mutex
	queues map[notificationType]chan notification

	exitOnce sync.Once
	exited   chan struct{}
}

func newEvents(onExit func(notification)) *events {
	return &events{
		onExit: onExit,
		queues: make(map[notificationType]chan notification),
		exited: make(chan struct{}),
	}
}

func (e *events) queue(t notificationType) chan notification {
	e.mu.Lock()
	defer e.mu.Unlock()
	q, ok := e.queues[t]
	if !ok {
		q = make(chan notification, eventQueue)
		e.queues[t] = q
	}
	return q
}

// deliver is the callback sink: it never blocks.
func (e *events) deliver(n notification) {
	n.Type &^= notificationFlags
	switch n.Type {
	case notifySystemExited, notifyServiceDisconnect:
		e.exitOnce.Do(func() {
			e.onExit(n)
			close(e.exited)
		})
		return
	}
	select {
	case e.queue(n.Type) <- n:
	default: // nobody waits for that many; the oldest are enough
	}
}

// drain drops kept notifications of type t: left over from an operation
// whose wait gave up, they must not complete the next one.
func (e *events) drain(t notificationType) {
	q := e.queue(t)
	for {
		select {
		case <-q:
		default:
			return
		}
	}
}

// wait returns the next notification of type t, failing when ctx ends or
// the compute system exits first.
func (e *events) wait(ctx context.Context, t notificationType) (notification, error) {
	q := e.queue(t)
	select { // one that already came wins over an exit since
	case n := <-q:
		return n, nil
	default:
	}
	select {
	case n := <-q:
		return n, nil
	case <-e.exited:
		return notification{}, errExited
	case <-ctx.Done():
		return notification{}, ctx.Err()
	}
}
