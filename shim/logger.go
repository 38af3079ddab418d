package shim

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/containerd/log"
)

// loggerStopTimeout is how long a binary logger may take to exit after
// its streams closed and it got SIGTERM.
const loggerStopTimeout = 10 * time.Second

// binaryLogger is a binary:// logging process, as containerd's shims run
// it: the URI's query as arguments, CONTAINER_ID and CONTAINER_NAMESPACE in
// its environment, the process's stdout on fd 3 and stderr on fd 4, and
// fd 5 closed (or written) when it is ready.
type binaryLogger struct {
	cmd      *exec.Cmd
	out, err *os.File // write ends
}

func startBinaryLogger(ctx context.Context, u *url.URL, taskID, ns string) (*binaryLogger, error) {
	var args []string
	for k, vs := range u.Query() {
		args = append(args, k)
		if len(vs) > 0 {
			args = append(args, vs[0])
		}
	}
	var p [3][2]*os.File // stdout, stderr, ready: read and write ends
	for i := range p {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(p[:i])
			return nil, err
		}
		p[i] = [2]*os.File{r, w}
	}
	cmd := exec.Command(u.Path, args...)
	cmd.Env = []string{"CONTAINER_ID=" + taskID, "CONTAINER_NAMESPACE=" + ns}
	cmd.ExtraFiles = []*os.File{p[0][0], p[1][0], p[2][1]}
	err := cmd.Start()
	// The logger holds its ends now.
	p[0][0].Close()
	p[1][0].Close()
	p[2][1].Close()
	defer p[2][0].Close()
	if err != nil {
		p[0][1].Close()
		p[1][1].Close()
		return nil, fmt.Errorf("start logger %s: %w", u.Path, err)
	}
	l := &binaryLogger{cmd: cmd, out: p[0][1], err: p[1][1]}
	ready := make(chan error, 1)
	go func() {
		_, err := p[2][0].Read(make([]byte, 1))
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil && err != io.EOF {
		l.stop(ctx)
		return nil, fmt.Errorf("logger %s: %w", u.Path, err)
	}
	return l, nil
}

func closeAll(ps [][2]*os.File) {
	for _, f := range ps {
		f[0].Close()
		f[1].Close()
	}
}

// loggerDrain is how long a logger may take to exit on its own after its
// streams closed, before it gets SIGTERM.
const loggerDrain = 2 * time.Second

// stop closes the logger's streams and waits for it to exit: on its own,
// then after SIGTERM, then SIGKILL.
func (l *binaryLogger) stop(ctx context.Context) {
	l.out.Close()
	l.err.Close()
	done := make(chan struct{})
	go func() { _ = l.cmd.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(loggerDrain):
	}
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(loggerStopTimeout):
		log.G(ctx).WithField("logger", l.cmd.Path).Warn("logger did not exit; killing it")
		_ = l.cmd.Process.Kill()
		<-done
	}
}
