package uvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"

	"github.com/containerd/errdefs"
)

// Resource kinds.
const (
	kindSCSI    = "scsi"
	kindPMem    = "pmem"
	kindOverlay = "overlay"
	kindShare   = "share"
	kindNIC     = "nic"
)

// resource is one entry of the UVM's table: what was added, how many
// holders it has, and what Release must undo. Only the exported fields are
// kept in the state file.
type resource struct {
	Key       string
	Kind      string
	Refs      int
	GuestPath string `json:",omitempty"`

	SCSI    *scsiState    `json:",omitempty"`
	PMem    *pmemState    `json:",omitempty"`
	Overlay *overlayState `json:",omitempty"`
	Share   *shareState   `json:",omitempty"`
	NIC     *nicState     `json:",omitempty"`

	// Broken is why the last teardown failed; the entry stays until a
	// Release succeeds.
	Broken string `json:",omitempty"`

	ready    chan struct{} // closed when setup has finished; err says how
	err      error
	gone     chan struct{}                   // while a teardown runs; closed when it ends
	hostUndo func(ctx context.Context) error // the host side of a share or NIC, this process only
}

// Resource is one holder's reference to something added to the UVM.
// Release drops it; the last Release undoes the addition in the guest and
// on the host, in reverse order.
type Resource struct {
	u         *UVM
	key       string
	guestPath string
	released  atomic.Bool
}

// GuestPath is where the resource is mounted in the guest ("" for none).
func (r *Resource) GuestPath() string { return r.guestPath }

// Key names the resource in the UVM's table.
func (r *Resource) Key() string { return r.key }

// Release drops the reference. A Release that fails may be called again;
// once one has succeeded, later calls do nothing.
func (r *Resource) Release(ctx context.Context) error {
	if r.released.Load() {
		return nil
	}
	if err := r.u.release(ctx, r.key); err != nil {
		return err
	}
	r.released.Store(true)
	return nil
}

// acquire takes a reference to key. The first holder runs setup, which
// fills in the entry and undoes its own steps when one fails; later
// holders wait for it and share the result when shared is true (a second
// holder of an unshared resource is errdefs.ErrAlreadyExists). A key whose
// teardown is running is waited for and added afresh.
func (u *UVM) acquire(ctx context.Context, key, kind string, shared bool, setup func(ctx context.Context, r *resource) error) (*Resource, error) {
	for {
		u.mu.Lock()
		r, ok := u.res[key]
		if !ok {
			r = &resource{Key: key, Kind: kind, Refs: 1, ready: make(chan struct{})}
			u.res[key] = r
			u.mu.Unlock()
			err := setup(ctx, r)
			u.mu.Lock()
			if err != nil {
				delete(u.res, key)
				r.err = err
			}
			close(r.ready)
			if err == nil {
				err = u.saveLocked()
			}
			u.mu.Unlock()
			if err != nil {
				return nil, err
			}
			return &Resource{u: u, key: key, guestPath: r.GuestPath}, nil
		}
		if g := r.gone; g != nil {
			u.mu.Unlock()
			select {
			case <-g:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if r.Broken != "" {
			u.mu.Unlock()
			return nil, fmt.Errorf("%s: an earlier release failed (%s): %w", key, r.Broken, errdefs.ErrFailedPrecondition)
		}
		if !shared {
			u.mu.Unlock()
			return nil, fmt.Errorf("%s is in use: %w", key, errdefs.ErrAlreadyExists)
		}
		r.Refs++
		ready := r.ready
		u.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			u.release(context.WithoutCancel(ctx), key)
			return nil, ctx.Err()
		}
		if r.err != nil {
			return nil, r.err
		}
		u.mu.Lock()
		err := u.saveLocked()
		u.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return &Resource{u: u, key: key, guestPath: r.GuestPath}, nil
	}
}

// release drops a reference to key and tears the resource down with the
// last one. A key that is not in the table is released already.
func (u *UVM) release(ctx context.Context, key string) error {
	u.mu.Lock()
	r, ok := u.res[key]
	if !ok {
		u.mu.Unlock()
		return nil
	}
	select {
	case <-r.ready:
	default: // still being set up: its holder releases it
		r.Refs--
		u.mu.Unlock()
		return nil
	}
	if r.Broken == "" {
		r.Refs--
	}
	if r.Refs > 0 {
		err := u.saveLocked()
		u.mu.Unlock()
		return err
	}
	if r.gone != nil { // another release of a broken entry runs
		g := r.gone
		u.mu.Unlock()
		<-g
		return nil
	}
	r.gone = make(chan struct{})
	u.mu.Unlock()

	err := u.teardown(ctx, r)

	u.mu.Lock()
	defer u.mu.Unlock()
	close(r.gone)
	r.gone = nil
	if err != nil {
		r.Broken = err.Error()
		u.saveLocked()
		return fmt.Errorf("release %s: %w", key, err)
	}
	delete(u.res, key)
	return u.saveLocked()
}

// teardown undoes r by its kind.
func (u *UVM) teardown(ctx context.Context, r *resource) error {
	switch r.Kind {
	case kindSCSI:
		return u.removeSCSI(ctx, r)
	case kindPMem:
		return u.removePMem(ctx, r)
	case kindOverlay:
		return u.removeOverlay(ctx, r)
	case kindShare:
		return u.removeShare(ctx, r)
	case kindNIC:
		return u.removeNIC(ctx, r)
	}
	return fmt.Errorf("resource %s of unknown kind %q", r.Key, r.Kind)
}

// ResourceInfo describes one entry of the UVM's table.
type ResourceInfo struct {
	Key       string
	Kind      string
	Refs      int
	GuestPath string
	Broken    string // why its last release failed
}

// Resources lists what has been added to the UVM and not released, by key.
func (u *UVM) Resources() []ResourceInfo {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []ResourceInfo
	for _, r := range u.res {
		out = append(out, ResourceInfo{Key: r.Key, Kind: r.Kind, Refs: r.Refs, GuestPath: r.GuestPath, Broken: r.Broken})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// state is what the state file holds.
type state struct {
	Resources  []*resource
	Containers map[string][]string
}

// save writes the table to the state file.
func (u *UVM) save() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.saveLocked()
}

// saveLocked writes the table (settled entries only) with u.mu held.
func (u *UVM) saveLocked() error {
	if u.opts.StateFile == "" {
		return nil
	}
	st := state{Containers: u.ctrs}
	for _, r := range u.res {
		select {
		case <-r.ready:
			st.Resources = append(st.Resources, r)
		default: // being set up
		}
	}
	sort.Slice(st.Resources, func(i, j int) bool { return st.Resources[i].Key < st.Resources[j].Key })
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := u.opts.StateFile + ".tmp"
	if err := os.MkdirAll(filepath.Dir(tmp), 0o700); err != nil {
		return fmt.Errorf("uvm state: %w", err)
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("uvm state: %w", err)
	}
	if err := os.Rename(tmp, u.opts.StateFile); err != nil {
		return fmt.Errorf("uvm state: %w", err)
	}
	return nil
}

// load reads the table from the state file; a missing file is an empty
// table.
func (u *UVM) load() error {
	if u.opts.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(u.opts.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("uvm state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("uvm state %s: %w", u.opts.StateFile, err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, r := range st.Resources {
		if r != nil && r.Key != "" {
			r.ready = make(chan struct{})
			close(r.ready)
			u.res[r.Key] = r
		}
	}
	if st.Containers != nil {
		u.ctrs = st.Containers
	}
	return nil
}

func (u *UVM) removeState() {
	if u.opts.StateFile != "" {
		os.Remove(u.opts.StateFile)
	}
}
