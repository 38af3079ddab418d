package main

import (
	"context"
	"io"
	"os"
	"sync"

	"github.com/containerd/console"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/protocol"
)

// stdioParams are the stream requests of an attached process: a terminal
// (stdin and stdout) when tty, else stdout and stderr pipes, plus stdin when
// stdin is wanted.
func stdioParams(tty, stdin bool) *protocol.ProcessParameters {
	return &protocol.ProcessParameters{
		EmulateConsole:   tty,
		CreateStdInPipe:  stdin || tty,
		CreateStdOutPipe: true,
		CreateStdErrPipe: !tty,
	}
}

// localConsole prepares this process's terminal for a tty process: it
// records its size in params and puts it in raw mode. The returned function
// restores the terminal; it is a no-op when stdin is not a terminal.
func localConsole(params *protocol.ProcessParameters) func() {
	c, err := console.ConsoleFromFile(os.Stdin)
	if err != nil {
		return func() {}
	}
	if sz, err := c.Size(); err == nil {
		params.ConsoleSize = []uint16{sz.Height, sz.Width}
	}
	if err := c.SetRaw(); err != nil {
		return func() {}
	}
	return func() { c.Reset() }
}

// attach relays p's stdio to this process's until p exits and returns its
// exit code. When ctx ends (an interrupt) p is sent SIGTERM and its exit is
// still awaited.
func attach(ctx context.Context, p *host.Process, tty bool) (int, error) {
	defer p.Close()
	if tty {
		go forwardResize(ctx, p)
	}
	var wg sync.WaitGroup
	if in := p.Stdin(); in != nil {
		go func() {
			io.Copy(in, os.Stdin)
			in.Close()
		}()
	}
	if out := p.Stdout(); out != nil {
		wg.Go(func() { io.Copy(os.Stdout, out) })
	}
	if errOut := p.Stderr(); errOut != nil {
		wg.Go(func() { io.Copy(os.Stderr, errOut) })
	}
	go func() {
		select {
		case <-ctx.Done(): // interrupted: stop the process, then report its exit
			p.Signal(context.Background(), host.SIGTERM)
		case <-p.WaitChannel():
		}
	}()
	// Output first: each stream closes at its EOF, and a guest may answer
	// the wait only after that (hcsshim's does).
	wg.Wait()
	if err := p.Wait(); err != nil {
		return 1, err
	}
	return p.ExitCode()
}
