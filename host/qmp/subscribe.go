package qmp

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// subscriptionBuffer is how many events a subscriber may fall behind by
// before further events to it are dropped (and counted).
const subscriptionBuffer = 128

// Subscription receives the events that match its filter, in arrival order,
// from the moment Subscribe returns. Subscribe before issuing the command
// whose event you want, so that the event cannot slip past.
type Subscription struct {
	c      *Client
	filter func(Event) bool
	ch     chan Event

	mu      sync.Mutex
	ended   bool
	dropped int
}

// Subscribe returns a subscription to the events for which filter returns
// true; a nil filter takes every event. The subscription's channel is closed
// by Close or when the connection ends.
func (c *Client) Subscribe(filter func(Event) bool) *Subscription {
	s := &Subscription{c: c, filter: filter, ch: make(chan Event, subscriptionBuffer)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs == nil { // connection already gone
		s.end()
		return s
	}
	c.subs[s] = struct{}{}
	return s
}

// Events is the subscription's channel.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Dropped is how many matching events were discarded because the
// subscriber fell more than subscriptionBuffer events behind.
func (s *Subscription) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Next waits for the subscription's next event.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	select {
	case e, ok := <-s.ch:
		if !ok {
			return Event{}, ErrClosed
		}
		return e, nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

// Close ends the subscription; it is safe to call twice.
func (s *Subscription) Close() {
	s.c.mu.Lock()
	if s.c.subs != nil {
		delete(s.c.subs, s)
	}
	s.c.mu.Unlock()
	s.end()
}

func (s *Subscription) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.ended = true
		close(s.ch)
	}
}

func (s *Subscription) offer(e Event) {
	if s.filter != nil && !s.filter(e) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	select {
	case s.ch <- e:
	default:
		s.dropped++
		s.c.logger.WithField("event", e.Name).Warn("qmp: subscriber too slow, event dropped")
	}
}

// publish hands e to every subscriber without blocking the read loop.
func (c *Client) publish(e Event) {
	c.mu.Lock()
	subs := make([]*Subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	c.logger.WithField("event", e.Name).Debugf("qmp event %s", e.Data)
	for _, s := range subs {
		s.offer(e)
	}
}

// Named returns a filter for events called name whose data satisfies
// match; a nil match takes every such event.
func Named(name string, match func(data json.RawMessage) bool) func(Event) bool {
	return func(e Event) bool { return e.Name == name && (match == nil || match(e.Data)) }
}

// WaitEvent waits for the next event called name that satisfies match (nil
// for any). It only sees events that arrive after it is called: to wait for
// the consequence of a command, Subscribe before Execute instead.
func (c *Client) WaitEvent(ctx context.Context, name string, match func(data json.RawMessage) bool) (Event, error) {
	s := c.Subscribe(Named(name, match))
	defer s.Close()
	e, err := s.Next(ctx)
	if err != nil {
		return Event{}, fmt.Errorf("wait for qmp event %s: %w", name, err)
	}
	return e, nil
}
