//go:build linux

package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host/qmp"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/transport"
)

// attachInfoFile, in the state directory, says how Attach reaches QEMU.
const attachInfoFile = "attach.json"

type attachInfo struct {
	Pid int
	QMP string // the second monitor's socket
}

func writeAttachInfo(p paths, pid int) error {
	b, err := json.Marshal(attachInfo{Pid: pid, QMP: p.attachQMP})
	if err != nil {
		return err
	}
	return os.WriteFile(p.attachInfo, b, 0o600)
}

// attached is what a VM reached with Attach has instead of a child
// process: QEMU's pid (as a pidfd) and the listener for the agent's ports
// that the VM's owner relays to.
type attached struct {
	pid   int
	pidfd int
	agent transport.Listener
	stop  chan struct{} // ends the exit watch
	once  sync.Once
}

// Attach reaches a running VM that another process started (Start, with
// StateDir stateDir) and keeps: a long-lived VM's relay. Hot-plug goes
// over QEMU's second monitor, which serves one attached process at a time
// (a second Attach waits until the first detaches); agent is where the
// owner relays the agent's ports. The disks, pmem devices and NICs QEMU
// has are read back, so hot-plug continues where the other process left
// off. Detach lets go of the VM; Shutdown stops it.
func Attach(ctx context.Context, stateDir string, agent transport.Listener) (*VM, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, attachInfoFile))
	if err != nil {
		return nil, fmt.Errorf("attach vm %s: %w", stateDir, err)
	}
	var ai attachInfo
	if err := json.Unmarshal(b, &ai); err != nil || ai.Pid <= 0 || ai.QMP == "" {
		return nil, fmt.Errorf("attach vm %s: bad %s (%v)", stateDir, attachInfoFile, err)
	}
	pidfd, err := unix.PidfdOpen(ai.Pid, 0)
	if err != nil {
		return nil, fmt.Errorf("attach vm %s: qemu pid %d: %w", stateDir, ai.Pid, vm.ErrNotRunning)
	}
	logger := log.G(ctx).WithFields(logrus.Fields{"vm": stateDir, "qemu-pid": ai.Pid})
	v := &VM{
		done:   make(chan struct{}),
		luns:   make(map[uint8]scsiDisk),
		state:  stateRunning,
		logger: logger,
		att:    &attached{pid: ai.Pid, pidfd: pidfd, agent: agent, stop: make(chan struct{})},
	}
	go v.watchExit()
	fail := func(err error) (*VM, error) {
		v.Detach()
		return nil, fmt.Errorf("attach vm %s: %w", stateDir, err)
	}
	conn, err := dialUnix(ctx, ai.QMP, v.done)
	if err != nil {
		return fail(err)
	}
	qc, err := qmp.New(log.WithLogger(ctx, logger), conn)
	if err != nil {
		conn.Close()
		return fail(err)
	}
	v.mu.Lock()
	v.qmp = qc
	v.mu.Unlock()
	if err := v.readDevices(ctx, qc); err != nil {
		return fail(err)
	}
	logger.WithField("luns", len(v.luns)).Debug("attached to qemu")
	return v, nil
}

// watchExit closes done when QEMU exits (its pidfd turns readable).
func (v *VM) watchExit() {
	a := v.att
	for {
		fds := []unix.PollFd{{Fd: int32(a.pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 200)
		select {
		case <-a.stop:
			return
		default:
		}
		if n > 0 || (err != nil && !errors.Is(err, unix.EINTR)) {
			v.mu.Lock()
			v.state = stateStopped
			v.mu.Unlock()
			close(v.done)
			return
		}
	}
}

// Detach lets go of a VM reached with Attach, leaving it running: the
// monitor is free for the next process. It does nothing to a VM this
// process started.
func (v *VM) Detach() error {
	a := v.att
	if a == nil {
		return nil
	}
	a.once.Do(func() {
		v.mu.Lock()
		if v.state == stateRunning {
			v.state = stateStopped
		}
		qc := v.qmp
		v.mu.Unlock()
		if qc != nil {
			qc.Close()
		}
		close(a.stop)
		unix.Close(a.pidfd)
	})
	return nil
}

// shutdownAttached quits QEMU over the monitor and waits for it to exit,
// killing it after the grace period; its owner cleans its state up.
func (v *VM) shutdownAttached(ctx context.Context, qc *qmp.Client, logger *logrus.Entry) error {
	if qc != nil && ctx.Err() == nil {
		v.quit(ctx, qc, logger)
	}
	select {
	case <-v.done:
	default:
		unix.PidfdSendSignal(v.att.pidfd, unix.SIGKILL, nil, 0)
		select {
		case <-v.done:
		case <-time.After(shutdownGrace):
			return fmt.Errorf("qemu pid %d did not exit", v.att.pid)
		}
	}
	return v.Detach()
}

// readDevices fills the device tables from what QEMU has: SCSI disks by
// their block nodes, pmem devices and NICs by their ids.
func (v *VM) readDevices(ctx context.Context, qc *qmp.Client) error {
	var blocks []struct {
		Inserted *struct {
			NodeName string `json:"node-name"`
		} `json:"inserted"`
	}
	if err := qc.Execute(ctx, "query-block", nil, &blocks); err != nil {
		return err
	}
	v.devMu.Lock()
	defer v.devMu.Unlock()
	for _, b := range blocks {
		if b.Inserted == nil {
			continue
		}
		var lun int
		var gen uint64
		if _, err := fmt.Sscanf(b.Inserted.NodeName, scsiController+"-lun%d-n%d", &lun, &gen); err != nil || lun > maxLUN {
			continue
		}
		v.luns[uint8(lun)] = scsiNames(uint8(lun), gen)
		v.diskGen = max(v.diskGen, gen)
	}
	var props []struct {
		Name string `json:"name"`
	}
	if err := qc.Execute(ctx, "qom-list", map[string]string{"path": "/machine/peripheral"}, &props); err != nil {
		return err
	}
	for _, p := range props {
		var n int
		switch {
		case strings.HasPrefix(p.Name, "pmem") && !strings.HasSuffix(p.Name, "-mem"):
			if _, err := fmt.Sscanf(p.Name, "pmem%d", &n); err == nil {
				v.pmems = max(v.pmems, uint32(n)+1)
			}
		case strings.HasPrefix(p.Name, "net") && strings.HasSuffix(p.Name, "-dev"):
			if _, err := fmt.Sscanf(p.Name, "net%d-dev", &n); err == nil {
				v.nics = max(v.nics, n+1)
			}
		}
	}
	return nil
}
