// Command gcs is the guest compute service: the agent a utility VM's init
// starts. It dials the host, serves the bridge protocol and runs processes
// and containers on the host's behalf. Invoked as "gcs init" it is
// libcontainer's container init instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // joins namespaces before the Go runtime starts, for "gcs init"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/guest/agent"
	"github.com/uvmgcs/gcs/guest/network"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/internal/timerslack"
	"github.com/uvmgcs/gcs/transport"
)

// init keeps the main thread, the thread-group leader, for the main
// goroutine alone. libcontainer runs helpers on locked threads that join a
// container's mount namespace and return without unlocking, so that the Go
// runtime ends the thread; the runtime cannot end the main thread and parks
// it instead, for good, in that namespace: the container's mounts stay
// alive with it and /proc/<agent>/mountinfo shows them. The guest network
// code's namespace threads are kept off the main thread the same way.
func init() {
	goruntime.LockOSThread()
}

type options struct {
	transport string
	stateRoot string
	cgroups   string
	logLevel  string
	logFormat string
	linkWait  time.Duration
	seal      bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// The container's process inherits this thread's timer slack:
		// the kernel's default, not the agent's.
		goruntime.LockOSThread()
		_ = timerslack.Set(timerslack.Default)
		libcontainer.Init() // never returns
	}
	tuneGC()
	var o options
	flag.StringVar(&o.transport, "transport", "auto", "how to reach the host: auto, vsock, serial:<virtio port name> or unix:<dir>")
	flag.StringVar(&o.stateRoot, "state-root", "/run/gcs", "directory for the agent's state")
	flag.StringVar(&o.cgroups, "cgroup-parent", "/containers", "cgroup containers go under when their spec names none")
	flag.StringVar(&o.logLevel, "loglevel", "info", "log level: trace, debug, info, warn, error")
	flag.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	flag.DurationVar(&o.linkWait, "network-link-timeout", network.DefaultLinkTimeout, "how long a network adapter's interface may take to appear")
	flag.BoolVar(&o.seal, "seal-binary", true, "run from a sealed in-memory copy of the agent's binary (one copy for the agent's life instead of a read-only overlay mount per process started)")
	flag.Parse()
	if o.seal {
		// On success this does not return: the agent starts again from
		// the sealed copy, where it is a no-op.
		if err := sealSelf(); err != nil {
			fmt.Fprintln(os.Stderr, "gcs: sealed binary copy:", err, "(libcontainer seals per process instead)")
		}
	}
	initGOMAXPROCS()
	if err := run(o); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "gcs:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	started := time.Now()
	logger, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	dialer, err := parseTransport(o.transport)
	if err != nil {
		return err
	}
	// Orphans of the processes we start are reparented to us, so the reaper
	// can collect them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	defer stop()
	ctx = log.WithLogger(ctx, logrus.NewEntry(logger))

	a, err := agent.New(agent.Config{
		Dialer:       dialer,
		StateRoot:    o.stateRoot,
		CgroupParent: o.cgroups,
		LinkTimeout:  o.linkWait,
		Started:      started,
	})
	if err != nil {
		return err
	}
	defer a.Close(context.WithoutCancel(ctx))
	log.G(ctx).WithField("transport", o.transport).Info("gcs started")
	return a.Run(ctx)
}

// parseTransport picks how to reach the host: vsock, a virtio-serial port
// (multiplexed), unix sockets in a directory, or auto — vsock when the VM
// has a vsock device, else the virtio-serial port called "gcs".
func parseTransport(s string) (transport.Dialer, error) {
	switch {
	case s == "vsock":
		return transport.Vsock{CID: transport.HostCID}, nil
	case s == "auto":
		if transport.VsockAvailable() {
			return transport.Vsock{CID: transport.HostCID}, nil
		}
		return transport.VirtioSerial("/sys", "/dev", "gcs"), nil
	case strings.HasPrefix(s, "serial:") && len(s) > len("serial:"):
		return transport.VirtioSerial("/sys", "/dev", strings.TrimPrefix(s, "serial:")), nil
	case strings.HasPrefix(s, "unix:") && len(s) > len("unix:"):
		return transport.Unix{Dir: strings.TrimPrefix(s, "unix:")}, nil
	}
	return nil, fmt.Errorf("transport %q: want vsock, serial:<port name>, auto or unix:<dir>", s)
}

func newLogger(level, format string) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	lv, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	l.SetLevel(lv)
	switch format {
	case "text":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
	return l, nil
}

// initGOMAXPROCS sets GOMAXPROCS=1 in the agent's environment, after its
// own runtime has started: libcontainer passes the agent's GOMAXPROCS to
// every container init it starts ("gcs init"), and that short-lived,
// thread-locked process starts fastest with one P. With more, its runtime
// starts threads to run its background goroutines on other CPUs and hands
// work between them (24 context switches for a bare start against 7 with
// one P, measured here) and first reads the cgroup's CPU limits to size
// itself. The agent's own GOMAXPROCS is what it was when it started.
func initGOMAXPROCS() {
	_ = os.Setenv("GOMAXPROCS", "1")
}

// tuneGC collects at 50% heap growth instead of Go's 100% unless GOGC says
// otherwise. The agent's live heap is small (about 1.3 MiB idle, 30 KiB
// per container) and most of what it allocates is per-request garbage
// (decoded specs, libcontainer configurations): with 100 running
// containers the resident memory measured 16.8 MiB at 100% and 15.8 MiB at
// 50%; the extra collections of a heap this size take well under a
// millisecond each.
func tuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(50)
	}
}
