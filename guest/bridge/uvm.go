package bridge

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
)

// Processes is what the bridge needs of the guest runtime to run processes
// in the utility VM (guest/runtime.Processes implements it).
type Processes interface {
	Start(ctx context.Context, params *protocol.ProcessParameters, stdio protocol.VsockStdioRelaySettings) (int, error)
	Wait(ctx context.Context, pid int) (int, error)
	Signal(ctx context.Context, pid int, signal int) error
	ResizeConsole(ctx context.Context, pid int, height, width uint16) error
}

// maxStacks bounds DumpStacks' answer so the response fits hcsshim's frame
// bound with room for the envelope.
const maxStacks = protocol.HcsshimMaxFrameSize / 2

// UVM serves the requests addressed to the utility VM itself: processes in
// the VM, VM shutdown and stack dumps.
type UVM struct {
	Processes Processes
	// Shutdown powers the VM off (in host mode: stops the agent). It is
	// called after the response has been queued.
	Shutdown func()
	// Containers serves requests addressed to containers; without it every
	// container id is unknown.
	Containers Containers
	// Resources serves ModifySettings addressed to the utility VM (disks,
	// layers, shares, networks); without it they are not implemented.
	Resources Resources
}

// Register installs u's handlers on m.
func (u *UVM) Register(m *Mux) {
	m.HandleFunc(protocol.ExecuteProcess, u.executeProcess)
	m.HandleFunc(protocol.WaitForProcess, u.waitForProcess)
	m.HandleFunc(protocol.SignalProcess, u.signalProcess)
	m.HandleFunc(protocol.ResizeConsole, u.resizeConsole)
	m.HandleFunc(protocol.ShutdownGraceful, u.shutdown)
	m.HandleFunc(protocol.ShutdownForced, u.shutdown)
	m.HandleFunc(protocol.DumpStacks, dumpStacks)
	m.HandleFunc(protocol.ModifySettings, u.modifySettings)
	if u.Containers != nil {
		u.registerContainers(m)
	}
}

// known refuses requests addressed to a container when no container
// runtime is wired in.
func (u *UVM) known(req *Request) error {
	if req.Base.ContainerID != protocol.UVMContainerID && u.Containers == nil {
		return fmt.Errorf("container %q: %w", req.Base.ContainerID, protocol.HrVmcomputeSystemNotFound)
	}
	return nil
}

func (u *UVM) executeProcess(ctx context.Context, req *Request) (protocol.Response, error) {
	if err := u.known(req); err != nil {
		return nil, err
	}
	var r protocol.ExecuteProcessRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	var params protocol.ProcessParameters
	err := DecodeJSON([]byte(r.Settings.ProcessParameters), &params, "ProcessParameters")
	if err != nil {
		return nil, err
	}
	var pid int
	if req.Base.ContainerID == protocol.UVMContainerID {
		pid, err = u.Processes.Start(ctx, &params, r.Settings.VsockStdioRelaySettings)
	} else {
		pid, err = u.Containers.ExecProcess(ctx, req.Base.ContainerID, &params, r.Settings.VsockStdioRelaySettings)
	}
	if err != nil {
		return nil, err
	}
	log.G(ctx).WithField(log.FieldProcessID, pid).Debug("process started in the utility VM")
	return &protocol.ExecuteProcessResponse{ProcessID: uint32(pid)}, nil
}

func (u *UVM) waitForProcess(ctx context.Context, req *Request) (protocol.Response, error) {
	if err := u.known(req); err != nil {
		return nil, err
	}
	var r protocol.WaitForProcessRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if cid := req.Base.ContainerID; cid != protocol.UVMContainerID {
		return u.waitForContainerProcess(req, cid, int(r.ProcessID), r.TimeoutInMs)
	}
	if r.TimeoutInMs != protocol.InfiniteWait {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(r.TimeoutInMs)*time.Millisecond)
		defer cancel()
	}
	code, err := u.Processes.Wait(ctx, int(r.ProcessID))
	if err != nil {
		return nil, err
	}
	return &protocol.WaitForProcessResponse{ExitCode: uint32(code)}, nil
}

// waitForContainerProcess answers once the process exits or the timeout
// passes, whichever is first; meanwhile the request holds no goroutine
// (a host keeps a wait pending on every process it runs).
func (u *UVM) waitForContainerProcess(req *Request, cid string, pid int, timeoutMs uint32) (protocol.Response, error) {
	respond := req.Defer()
	var mu sync.Mutex
	var timer *time.Timer
	cancel, err := u.Containers.OnExit(cid, pid, func(code int) {
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		respond(&protocol.WaitForProcessResponse{ExitCode: uint32(code)}, nil)
	})
	if err != nil {
		return nil, err
	}
	if timeoutMs != protocol.InfiniteWait {
		mu.Lock()
		timer = time.AfterFunc(time.Duration(timeoutMs)*time.Millisecond, func() {
			if cancel() {
				respond(nil, fmt.Errorf("wait for process %d: %w", pid, protocol.HrVmcomputeTimeout))
			}
		})
		mu.Unlock()
	}
	return nil, nil
}

func (u *UVM) signalProcess(ctx context.Context, req *Request) (protocol.Response, error) {
	if err := u.known(req); err != nil {
		return nil, err
	}
	var r protocol.SignalProcessRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	sig := 0
	if r.Options != nil {
		sig = int(r.Options.Signal)
	}
	if cid := req.Base.ContainerID; cid != protocol.UVMContainerID {
		return nil, u.Containers.Signal(ctx, cid, int(r.ProcessID), sig)
	}
	return nil, u.Processes.Signal(ctx, int(r.ProcessID), sig)
}

func (u *UVM) resizeConsole(ctx context.Context, req *Request) (protocol.Response, error) {
	if err := u.known(req); err != nil {
		return nil, err
	}
	var r protocol.ResizeConsoleRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if cid := req.Base.ContainerID; cid != protocol.UVMContainerID {
		return nil, u.Containers.ResizeConsole(ctx, cid, int(r.ProcessID), r.Height, r.Width)
	}
	return nil, u.Processes.ResizeConsole(ctx, int(r.ProcessID), r.Height, r.Width)
}

func (u *UVM) shutdown(ctx context.Context, req *Request) (protocol.Response, error) {
	if err := u.known(req); err != nil {
		return nil, err
	}
	if cid := req.Base.ContainerID; cid != protocol.UVMContainerID {
		return nil, u.Containers.Shutdown(ctx, cid, req.Type == protocol.ShutdownForced)
	}
	log.G(ctx).Info("utility VM shutdown requested")
	if u.Shutdown != nil {
		req.AfterResponse(u.Shutdown)
	}
	return nil, nil
}

func dumpStacks(ctx context.Context, req *Request) (protocol.Response, error) {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	stacks := string(buf[:n])
	if len(stacks) > maxStacks {
		stacks = stacks[:maxStacks] + "\n... truncated"
	}
	return &protocol.DumpStacksResponse{GuestStacks: stacks}, nil
}
