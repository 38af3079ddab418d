package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"

	"github.com/uvmgcs/gcs/shim"
)

// serve is the daemon: it serves the task API on fd 3 until containerd
// shuts it down with no task left, or a signal ends it.
func serve(f flags) error {
	signal.Ignore(syscall.SIGPIPE) // containerd may close the log or a FIFO's reader
	dir := os.Getenv(groupDirEnv)
	if dir == "" {
		return fmt.Errorf("the shim daemon needs %s (it is started by `start`)", groupDirEnv)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := openLog(ctx, f.debug); err != nil {
		return err
	}
	ctx = log.WithLogger(ctx, log.L.WithField("group", filepath.Base(dir)).WithField("runtime", RuntimeName))

	l, err := net.FileListener(os.NewFile(3, "socket"))
	if err != nil {
		return fmt.Errorf("the socket on fd 3: %w", err)
	}
	pub := shim.NewPublisher(ctx, os.Getenv("TTRPC_ADDRESS"), f.namespace)
	svc := shim.New(ctx, shim.Options{StateDir: dir, Namespace: f.namespace, Publisher: pub})
	server, err := ttrpc.NewServer(ttrpc.WithServerHandshaker(ttrpc.UnixSocketRequireSameUser()))
	if err != nil {
		return err
	}
	taskAPI.RegisterTTRPCTaskService(server, svc)
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, l) }()
	log.G(ctx).Info("shim serving")

	var lock *os.File
	for lock == nil {
		select {
		case <-svc.ShutdownRequested():
			// Exit only when idle and no start promised this daemon to
			// a task: under the group's lock, so no start can.
			l, err := lockGroup(dir)
			if err != nil {
				log.G(ctx).WithError(err).Error("lock the group to exit")
				continue
			}
			if svc.Idle() && !pending(dir) {
				lock = l
				os.Remove(filepath.Join(dir, socketName))
			} else {
				l.Close()
			}
		case s := <-sigs:
			log.G(ctx).WithField("signal", s).Info("shim stopping")
			lock = devNull()
		case err := <-served:
			if err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
				log.G(ctx).WithError(err).Error("ttrpc server failed")
			}
			lock = devNull()
		}
	}
	defer lock.Close()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer scancel()
	if err := svc.Close(sctx); err != nil {
		log.G(ctx).WithError(err).Warn("power the VM off")
	}
	pctx, pcancel := context.WithTimeout(sctx, 2*time.Second)
	pub.Close(pctx)
	pcancel()
	qctx, qcancel := context.WithTimeout(sctx, time.Second)
	_ = server.Shutdown(qctx)
	qcancel()
	os.RemoveAll(dir)
	log.G(ctx).Info("shim exited")
	return nil
}

// openLog sends the shim's and the host library's logs to the bundle's log
// FIFO, which containerd reads.
func openLog(ctx context.Context, debug bool) error {
	logrus.SetFormatter(&logrus.TextFormatter{TimestampFormat: time.RFC3339Nano, FullTimestamp: true})
	if debug {
		logrus.SetLevel(logrus.DebugLevel)
	}
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w, err := fifo.OpenFifo(octx, "log", syscall.O_WRONLY, 0o700)
	if err != nil {
		// No reader (a shim started by hand): log to nowhere rather than fail.
		logrus.SetOutput(devNull())
		return nil
	}
	logrus.SetOutput(w)
	return nil
}

func devNull() *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return os.Stderr
	}
	return f
}
