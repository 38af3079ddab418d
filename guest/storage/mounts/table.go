package mounts

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/internal/log"
)

// Undo reverses one mount (unmounts it, removes what it created).
type Undo func(ctx context.Context) error

// MountFunc performs a mount and returns how to undo it. When it fails it
// must leave nothing behind.
type MountFunc func(ctx context.Context) (Undo, error)

// Table tracks the guest's mounts by target, counting the requests that
// hold each one. Adding a target that is mounted with the same key takes
// another reference; removing the last reference undoes the mount.
// Operations on one target are serialised; different targets proceed
// concurrently. It is safe for concurrent use.
type Table struct {
	roots Roots

	mu      sync.Mutex
	entries map[string]*entry
	seq     uint64
}

type entry struct {
	mu    sync.Mutex // held while the target is being mounted or unmounted
	users int        // holders and waiters of mu; guarded by Table.mu
	refs  int        // written with both Table.mu and mu held
	seq   uint64     // order of mounting, for unwinding; as refs
	key   string
	undo  Undo
}

// New returns an empty table whose targets must lie beneath roots
// (DefaultRoots() if empty).
func New(roots []string) (*Table, error) {
	r, err := NewRoots(roots)
	if err != nil {
		return nil, err
	}
	return &Table{roots: r, entries: make(map[string]*entry)}, nil
}

// Roots returns the table's allowed roots, for checking paths that are
// used rather than mounted on (layers, scratch directories).
func (t *Table) Roots() Roots { return t.roots }

// acquire returns target's entry, creating it, with its lock held.
func (t *Table) acquire(target string) *entry {
	t.mu.Lock()
	e := t.entries[target]
	if e == nil {
		e = &entry{}
		t.entries[target] = e
	}
	e.users++
	t.mu.Unlock()
	e.mu.Lock()
	return e
}

// release unlocks e and forgets it when nobody holds or waits for it and
// nothing is mounted.
func (t *Table) release(target string, e *entry) {
	e.mu.Unlock()
	t.mu.Lock()
	e.users--
	if e.users == 0 && e.refs == 0 {
		delete(t.entries, target)
	}
	t.mu.Unlock()
}

// setRefs records e's reference count (e's lock held).
func (t *Table) setRefs(e *entry, refs int) {
	t.mu.Lock()
	if e.refs == 0 && refs > 0 {
		t.seq++
		e.seq = t.seq
	}
	e.refs = refs
	t.mu.Unlock()
}

// Add mounts target with mount, or, when target is already mounted with
// the same key (a description of the source and options), takes another
// reference to it. A target mounted with a different key is refused.
func (t *Table) Add(ctx context.Context, target, key string, mount MountFunc) error {
	if err := t.roots.CheckLexical(target); err != nil {
		return err
	}
	e := t.acquire(target)
	defer t.release(target, e)
	if e.refs > 0 {
		if e.key != key {
			return fmt.Errorf("%s is already mounted from %s, not %s: %w", target, e.key, key, errdefs.ErrInvalidArgument)
		}
		t.setRefs(e, e.refs+1)
		log.G(ctx).WithField("target", target).WithField("refs", e.refs).Debug("mount reference added")
		return nil
	}
	if err := t.roots.CheckTarget(target); err != nil {
		return err
	}
	undo, err := mount(ctx)
	if err != nil {
		return fmt.Errorf("mount %s at %s: %w", key, target, err)
	}
	e.key, e.undo = key, undo
	t.setRefs(e, 1)
	log.G(ctx).WithField("target", target).WithField("source", key).Debug("mounted")
	return nil
}

// Remove drops a reference to target and undoes the mount with the last
// one. A target that is not mounted is already removed: that is success.
// When undoing fails the reference is kept, so the caller may retry.
func (t *Table) Remove(ctx context.Context, target string) error {
	if err := t.roots.CheckLexical(target); err != nil {
		return err
	}
	e := t.acquire(target)
	defer t.release(target, e)
	switch {
	case e.refs == 0:
		log.G(ctx).WithField("target", target).Debug("remove of a target that is not mounted")
		return nil
	case e.refs > 1:
		t.setRefs(e, e.refs-1)
		return nil
	}
	if err := e.undo(ctx); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	t.setRefs(e, 0)
	log.G(ctx).WithField("target", target).Debug("unmounted")
	return nil
}

// Refs returns how many references target has (0: not mounted).
func (t *Table) Refs(target string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[target]; e != nil {
		return e.refs
	}
	return 0
}

// UnwindAll undoes every mount regardless of references, the most recent
// first (so an overlay goes before the disks beneath it). It returns every
// failure; the targets that failed stay in the table.
func (t *Table) UnwindAll(ctx context.Context) error {
	type held struct {
		target string
		seq    uint64
	}
	t.mu.Lock()
	all := make([]held, 0, len(t.entries))
	for target, e := range t.entries {
		if e.refs > 0 {
			all = append(all, held{target, e.seq})
		}
	}
	t.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].seq > all[j].seq })
	var errs []error
	for _, h := range all {
		e := t.acquire(h.target)
		if e.refs > 0 {
			if err := e.undo(ctx); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", h.target, err))
			} else {
				t.setRefs(e, 0)
			}
		}
		t.release(h.target, e)
	}
	return errors.Join(errs...)
}
