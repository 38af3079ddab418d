package main

import (
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/uvmgcs/gcs/host"
)

// killMain sends a signal (SIGTERM by default) to a container's init.
func killMain(args []string) (int, error) {
	f := newCmdFlags("kill")
	pos, err := f.parse(args, 1, 2)
	if err != nil {
		return 2, err
	}
	sig := host.SIGTERM
	if len(pos) == 2 {
		if sig, err = host.ParseSignal(pos[1]); err != nil {
			return 2, usageError{err}
		}
	}
	s, c, _, err := f.connectTo(pos[0])
	if err != nil {
		return 1, err
	}
	defer s.close()
	if err := c.Signal(s.ctx, sig); err != nil {
		if errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err) {
			return 1, fmt.Errorf("kill %q: container is not running: %w", c.ID(), err)
		}
		return 1, fmt.Errorf("kill %q: %w", c.ID(), err)
	}
	return 0, nil
}
