package host

import (
	"sync"
	"time"
)

// EventType says what an Event reports.
type EventType int

const (
	// EventExit: a container's init exited (ExitCode, OOMKilled).
	EventExit EventType = iota + 1
	// EventExecExit: a process exec'd into a container exited.
	EventExecExit
	// EventOOM: the OOM killer acted in a container. It comes before the
	// EventExit it caused, as containerd's TaskOOM comes before TaskExit.
	EventOOM
)

func (t EventType) String() string {
	switch t {
	case EventExit:
		return "exit"
	case EventExecExit:
		return "exec-exit"
	case EventOOM:
		return "oom"
	}
	return "unknown"
}

// Event is something that happened to a container or one of its
// processes.
type Event struct {
	Type        EventType
	ContainerID string
	Pid         int // the process's pid in the guest (the init's for EventExit)
	ExitCode    int
	OOMKilled   bool
	At          time.Time
}

// eventDepth bounds what one slow watcher can make the connection hold.
const eventDepth = 1024

// hub hands every event to every watcher.
type hub struct {
	mu       sync.Mutex
	next     int
	watchers map[int]chan Event
}

// Events returns a channel of the connection's events from now on, and a
// function that stops them and closes the channel. Any number of watchers
// may read their own channel; one that falls eventDepth events behind
// loses the newest (and a warning is logged). The channel is closed when
// the connection dies.
func (gc *GuestConnection) Events() (<-chan Event, func()) {
	h := &gc.events
	ch := make(chan Event, eventDepth)
	h.mu.Lock()
	if h.watchers == nil {
		h.watchers = make(map[int]chan Event)
	}
	select {
	case <-gc.done:
		h.mu.Unlock()
		close(ch)
		return ch, func() {}
	default:
	}
	id := h.next
	h.next++
	h.watchers[id] = ch
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			if _, ok := h.watchers[id]; ok {
				delete(h.watchers, id)
				close(ch)
			}
			h.mu.Unlock()
		})
	}
}

func (gc *GuestConnection) publish(e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	h := &gc.events
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ch := range h.watchers {
		select {
		case ch <- e:
		default:
			gc.log.WithField("event", e.Type.String()).Warn("an event watcher is too far behind; event dropped")
		}
	}
}

// closeEvents ends every watcher's channel (the connection died).
func (gc *GuestConnection) closeEvents() {
	h := &gc.events
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, ch := range h.watchers {
		close(ch)
		delete(h.watchers, id)
	}
}
