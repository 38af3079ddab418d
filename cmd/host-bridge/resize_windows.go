package main

import (
	"context"
	"os"
	"time"

	"github.com/containerd/console"

	"github.com/uvmgcs/gcs/host"
)

// resizePoll is how often the console's size is checked: a Windows
// console announces no resize to a process reading it as a file.
const resizePoll = 250 * time.Millisecond

// forwardResize passes this console's size changes on to p.
func forwardResize(ctx context.Context, p *host.Process) {
	c, err := console.ConsoleFromFile(os.Stdin)
	if err != nil {
		return
	}
	last, _ := c.Size()
	t := time.NewTicker(resizePoll)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if sz, err := c.Size(); err == nil && sz != last {
				last = sz
				p.ResizeConsole(ctx, sz.Height, sz.Width)
			}
		case <-p.WaitChannel():
			return
		}
	}
}
