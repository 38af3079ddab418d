package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/hostmode"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

func execMain(args []string) (int, error) {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	dir := fs.String("socket-dir", "", "directory of the unix transport's sockets")
	guest := fs.String("guest", "", "start this gcs binary on this host (host mode) instead of waiting for a VM's agent")
	tty := fs.Bool("t", false, "allocate a terminal")
	interactive := fs.Bool("i", false, "keep stdin open")
	cwd := fs.String("cwd", "/", "working directory")
	timeout := fs.Duration("connect-timeout", 30*time.Second, "how long to wait for the agent to connect")
	var env multiFlag
	fs.Var(&env, "env", "KEY=VALUE environment entry (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return 2, errors.New("exec: no command given")
	}
	if *dir == "" && *guest == "" {
		return 2, errors.New("exec: --socket-dir or --guest is required")
	}

	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	gc, cleanup, err := connect(cctx, *dir, *guest)
	if err != nil {
		return 1, err
	}
	defer cleanup()

	params := &protocol.ProcessParameters{
		CommandArgs:      argv,
		WorkingDirectory: *cwd,
		Environment:      envMap(env),
		EmulateConsole:   *tty,
		CreateStdInPipe:  *interactive || *tty,
		CreateStdOutPipe: true,
		CreateStdErrPipe: !*tty,
	}
	if *tty {
		if c, err := console.ConsoleFromFile(os.Stdin); err == nil {
			if sz, err := c.Size(); err == nil {
				params.ConsoleSize = []uint16{sz.Height, sz.Width}
			}
			if err := c.SetRaw(); err == nil {
				defer c.Reset()
			}
		}
	}
	p, err := gc.CreateProcess(ctx, params)
	if err != nil {
		return 1, err
	}
	defer p.Close()
	if *tty {
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
		<-ctx.Done() // interrupted: stop the process, then report its exit
		p.Signal(context.Background(), int(unix.SIGTERM))
	}()
	if err := p.Wait(); err != nil {
		return 1, err
	}
	wg.Wait()
	return p.ExitCode()
}

// connect returns a negotiated connection: from an agent started here (host
// mode) or from one that dials the socket directory.
func connect(ctx context.Context, dir, guest string) (*host.GuestConnection, func(), error) {
	if guest != "" {
		a, err := hostmode.Start(ctx, hostmode.Config{Binary: guest, Dir: dir, Stderr: agentLog()})
		if err != nil {
			return nil, nil, err
		}
		gc, err := a.Connect(ctx)
		if err != nil {
			a.Close(time.Second)
			return nil, nil, err
		}
		return gc, func() { gc.Close(); a.Close(5 * time.Second) }, nil
	}
	u := transport.Unix{Dir: dir}
	l, err := u.Listen(transport.BridgePort)
	if err != nil {
		return nil, nil, err
	}
	defer l.Close()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	c, err := l.Accept()
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("waiting for the agent on %s: %w", u.Path(transport.BridgePort), ctx.Err())
		}
		return nil, nil, err
	}
	gc, err := host.Connect(ctx, c, host.Config{IO: u})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return gc, func() { gc.Close() }, nil
}

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

// agentLog is where a host-mode agent's log goes: stderr when
// HOST_BRIDGE_AGENT_LOG=1, else nowhere.
func agentLog() io.Writer {
	if os.Getenv("HOST_BRIDGE_AGENT_LOG") == "1" {
		return os.Stderr
	}
	return nil
}

func envMap(env []string) map[string]string {
	m := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, kv := range env {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				m[kv[:i]] = kv[i+1:]
				break
			}
		}
	}
	return m
}

type multiFlag []string

func (m *multiFlag) String() string     { return fmt.Sprint(*m) }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
