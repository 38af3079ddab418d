package hcs

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Shutdown implements vm.VM: a graceful HcsShutdownComputeSystem, then
// HcsTerminateComputeSystem when the VM has not exited by the grace period
// or ctx's end, then the callback is unregistered and the handle closed. A
// system HCS no longer knows or that has already stopped counts as shut
// down. Concurrent and later calls wait for the first and return its
// result.
//
// A Linux guest may have no component that answers HCS's graceful
// shutdown; host/uvm asks the agent to power off first, so the VM is
// normally gone before this is called.
func (v *VM) Shutdown(ctx context.Context) error {
	v.stop(ctx, true)
	return v.shutdownErr
}

// stop runs the shutdown once; graceful asks the VM to shut down first.
func (v *VM) stop(ctx context.Context, graceful bool) {
	v.shutdownOnce.Do(func() { v.shutdownErr = v.shutdown(ctx, graceful) })
}

func (v *VM) shutdown(ctx context.Context, graceful bool) error {
	v.mu.Lock()
	v.state = stateStopped
	h, cb := v.h, v.cb
	v.mu.Unlock()

	if h == 0 { // never created, and now never will be
		v.finish(nil)
		return nil
	}
	var errs []error
	if !v.hasExited() && graceful && ctx.Err() == nil {
		v.shutdownGracefully(ctx, h)
	}
	if !v.hasExited() {
		if err := v.terminate(h); err != nil {
			errs = append(errs, err)
		}
	}
	if cb != 0 {
		if err := v.api.UnregisterComputeSystemCallback(cb); err != nil {
			errs = append(errs, callError("HcsUnregisterComputeSystemCallback", v.opts.ID, err, ""))
		}
	}
	if err := v.api.CloseComputeSystem(h); err != nil {
		errs = append(errs, callError("HcsCloseComputeSystem", v.opts.ID, err, ""))
	}
	v.finish(errNoExit) // no-op when the exit was reported
	if len(errs) > 0 {
		return fmt.Errorf("shutdown vm: %w", errors.Join(errs...))
	}
	return nil
}

// shutdownGracefully asks HCS to shut the VM down and waits, within the
// grace period and ctx, for it to exit.
func (v *VM) shutdownGracefully(ctx context.Context, h handle) {
	ctx, cancel := context.WithTimeout(ctx, shutdownGrace)
	defer cancel()
	result, err := v.api.ShutdownComputeSystem(h, "")
	switch {
	case err == nil || isPending(err):
	case isGone(err):
		return
	default:
		v.logger.WithError(callError("HcsShutdownComputeSystem", v.opts.ID, err, result)).
			Warn("graceful shutdown refused; terminating")
		return
	}
	select {
	case <-v.done:
	case <-ctx.Done():
		v.logger.Warn("the VM did not exit after a graceful shutdown; terminating")
	}
}

// terminate stops the VM at once and waits, up to exitWait, for HCS to
// report the exit.
func (v *VM) terminate(h handle) error {
	result, err := v.api.TerminateComputeSystem(h, "")
	switch {
	case err == nil || isPending(err):
	case isGone(err):
		return nil
	default:
		return callError("HcsTerminateComputeSystem", v.opts.ID, err, result)
	}
	t := time.NewTimer(v.exitWait)
	defer t.Stop()
	select {
	case <-v.done:
		return nil
	case <-t.C:
		return fmt.Errorf("hcs %s: no SystemExited within %s of terminating", v.opts.ID, v.exitWait)
	}
}
