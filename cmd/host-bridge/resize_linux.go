package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host"
)

// forwardResize passes this terminal's size changes (SIGWINCH) on to p.
func forwardResize(ctx context.Context, p *host.Process) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGWINCH)
	defer signal.Stop(ch)
	c, err := console.ConsoleFromFile(os.Stdin)
	if err != nil {
		return
	}
	for {
		select {
		case <-ch:
			if sz, err := c.Size(); err == nil {
				p.ResizeConsole(ctx, sz.Height, sz.Width)
			}
		case <-p.WaitChannel():
			return
		}
	}
}
