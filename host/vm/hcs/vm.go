package hcs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/Microsoft/go-winio/pkg/guid"
	"github.com/sirupsen/logrus"

	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/transport"
)

// shutdownGrace is how long Shutdown waits for the VM to exit after a
// graceful shutdown before terminating it, when ctx allows that long.
const shutdownGrace = 5 * time.Second

// defaultExitWait bounds the wait for SystemExited after a terminate.
const defaultExitWait = 30 * time.Second

// lifecycle states.
type state int

const (
	stateNew state = iota
	stateStarting
	stateRunning
	stateStopped
)

// VM is a utility VM run by HCS. Make one with New.
type VM struct {
	cfg      vm.Config
	opts     Options
	api      api
	apiErr   error         // why there is no api (not Windows)
	ev       *events       // the compute system's notifications
	exitWait time.Duration // after a terminate

	logger *logrus.Entry // the driver's own lines: HCS threads, Shutdown

	mu        sync.Mutex // guards the fields below it up to done
	state     state
	h         handle
	cb        callback
	runtimeID guid.GUID

	done     chan struct{} // closed when the VM exited (or never will run)
	doneOnce sync.Once
	waitErr  error // how it exited; set before done closes

	shutdownOnce sync.Once
	shutdownErr  error // set inside shutdownOnce

	consoleStop func() // stops serving the console pipe this VM made

	devMu sync.Mutex // serializes hot-plug; guards the device tables
	luns  map[uint8]string
	pmems uint32 // VPMem devices added so far
}

var _ vm.VM = (*VM)(nil)

// New returns a VM for cfg and opts; nothing happens until Start. Off
// Windows the VM can be made and shut down, and Start fails with an error
// wrapping errors.ErrUnsupported.
func New(cfg vm.Config, opts Options) *VM {
	a, err := systemAPI()
	return newVM(cfg, opts, a, err)
}

func newVM(cfg vm.Config, opts Options, a api, apiErr error) *VM {
	// HCS's worker process resolves no relative paths.
	for _, p := range []*string{&cfg.Kernel, &cfg.Initrd} {
		if *p != "" {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
	}
	opts = opts.withDefaults()
	if opts.ID == "" {
		if g, err := guid.NewV4(); err == nil {
			opts.ID = g.String()
		}
	}
	v := &VM{
		cfg:      cfg,
		opts:     opts,
		api:      a,
		apiErr:   apiErr,
		exitWait: defaultExitWait,
		done:     make(chan struct{}),
		luns:     make(map[uint8]string),
		logger:   log.L.WithField("vm", opts.ID),
	}
	v.ev = newEvents(v.exited)
	return v
}

// ID is the compute system's name.
func (v *VM) ID() string { return v.opts.ID }

// Start implements vm.VM: create the compute system, register for its
// notifications, wait for the create to complete, read its runtime ID,
// start it and wait for that to complete. It returns once the VM runs;
// there is no agent channel to connect (Agent listens on its hvsockets). On any failure
// the compute system is terminated and its handle closed.
func (v *VM) Start(ctx context.Context) (err error) {
	v.mu.Lock()
	if v.state != stateNew {
		v.mu.Unlock()
		return fmt.Errorf("start vm: already started or shut down: %w", vm.ErrNotRunning)
	}
	v.state = stateStarting
	v.mu.Unlock()
	defer func() {
		if err != nil {
			v.stop(context.WithoutCancel(ctx), false)
		}
	}()

	if v.apiErr != nil {
		return fmt.Errorf("start vm: %w", v.apiErr)
	}
	cfg := v.cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("start vm: %w", err)
	}
	if err := v.opts.validate(); err != nil {
		return fmt.Errorf("start vm: %w", err)
	}
	if v.opts.ID == "" {
		return errors.New("start vm: no compute system ID (Options.ID) and none could be generated")
	}
	if cfg.ConsoleLog != nil && v.opts.ConsolePipe == "" {
		name, stop, err := serveConsole(cfg.ConsoleLog)
		if err != nil {
			return fmt.Errorf("start vm: %w", err)
		}
		v.opts.ConsolePipe, v.consoleStop = name, stop
	}
	doc, err := json.Marshal(uvmDocument(cfg, v.opts))
	if err != nil {
		return fmt.Errorf("start vm: %w", err)
	}
	id := v.opts.ID
	logger := log.G(ctx).WithField("vm", id)
	logger.WithField("document", string(doc)).Debug("creating compute system")

	// Create and register under the lock, so that a concurrent Shutdown
	// either sees the handle or keeps the system from being created.
	v.mu.Lock()
	if v.state != stateStarting {
		v.mu.Unlock()
		return fmt.Errorf("start vm: shut down during start: %w", vm.ErrNotRunning)
	}
	h, result, createErr := v.api.CreateComputeSystem(id, string(doc))
	if createErr != nil && !isPending(createErr) {
		v.mu.Unlock()
		return fmt.Errorf("start vm: %w", callError("HcsCreateComputeSystem", id, createErr, result))
	}
	v.h = h
	cb, regErr := v.api.RegisterComputeSystemCallback(h, v.ev.deliver)
	if regErr == nil {
		v.cb = cb
	}
	v.mu.Unlock()
	if regErr != nil {
		return fmt.Errorf("start vm: %w", callError("HcsRegisterComputeSystemCallback", id, regErr, ""))
	}
	if err := v.complete(ctx, "HcsCreateComputeSystem", notifySystemCreateCompleted, result, createErr); err != nil {
		return fmt.Errorf("start vm: %w", err)
	}

	runtimeID, err := v.readRuntimeID(h)
	if err != nil {
		return fmt.Errorf("start vm: %w", err)
	}
	v.mu.Lock()
	v.runtimeID = runtimeID
	v.mu.Unlock()

	err = v.call(ctx, "HcsStartComputeSystem", notifySystemStartCompleted, func() (string, error) {
		return v.api.StartComputeSystem(h, "")
	})
	if err != nil {
		return fmt.Errorf("start vm: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state != stateStarting {
		return fmt.Errorf("start vm: shut down during start: %w", vm.ErrNotRunning)
	}
	v.state = stateRunning
	logger.WithField("runtime-id", runtimeID).Info("compute system running")
	return nil
}

// call runs one operation on the compute system and, when HCS completes it
// asynchronously, waits within ctx for its completion notification.
func (v *VM) call(ctx context.Context, op string, completion notificationType, f func() (string, error)) error {
	v.ev.drain(completion)
	result, err := f()
	return v.complete(ctx, op, completion, result, err)
}

// complete turns what an operation returned into its outcome: its error,
// or for a pending operation the status of its completion notification.
func (v *VM) complete(ctx context.Context, op string, completion notificationType, result string, err error) error {
	if err == nil {
		return nil
	}
	if !isPending(err) {
		return callError(op, v.opts.ID, err, result)
	}
	n, err := v.ev.wait(ctx, completion)
	if err != nil {
		return fmt.Errorf("hcs %s %s: waiting for %s: %w", op, v.opts.ID, completion, err)
	}
	if int32(n.Status) < 0 {
		return &Error{Op: op, ID: v.opts.ID, Code: n.Status, Message: resultMessage(n.Data)}
	}
	return nil
}

// readRuntimeID asks HCS for the VM's runtime ID, the VMID hvsocket
// addresses it by.
func (v *VM) readRuntimeID(h handle) (guid.GUID, error) {
	props, result, err := v.api.GetComputeSystemProperties(h, "{}")
	if err != nil {
		return guid.GUID{}, callError("HcsGetComputeSystemProperties", v.opts.ID, err, result)
	}
	var p properties
	if err := json.Unmarshal([]byte(props), &p); err != nil {
		return guid.GUID{}, fmt.Errorf("hcs properties of %s: %w", v.opts.ID, err)
	}
	g, err := guid.FromString(p.RuntimeID)
	if err != nil {
		return guid.GUID{}, fmt.Errorf("hcs properties of %s: RuntimeId %q: %w", v.opts.ID, p.RuntimeID, err)
	}
	return g, nil
}

// Agent implements vm.VM: an hvsocket listener for this VM's runtime ID.
// There is no serial channel; the bridge and every stdio stream are
// separate connections the guest dials to vsock ports, which Hyper-V
// carries as hvsockets. It is nil until Start has read the runtime ID. The
// guest redials until the host listens, so listening after Start returns
// is in time.
func (v *VM) Agent() transport.Listener {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state == stateNew || v.runtimeID == (guid.GUID{}) {
		return nil
	}
	return v.api.HvSocket(v.runtimeID)
}

// Done implements vm.VM: closed at the SystemExited notification, or when
// Shutdown has finished with a VM that never ran or never reported its exit.
func (v *VM) Done() <-chan struct{} { return v.done }

// Wait implements vm.VM: nil when the VM shut itself down (or never ran),
// an *ExitError when it was terminated or exited unexpectedly, an *Error
// when HCS reported a failure.
func (v *VM) Wait() error {
	<-v.done
	return v.waitErr
}

// ExitError is how a VM exited other than by shutting itself down.
type ExitError struct {
	ID       string
	ExitType string // ForcedExit, UnexpectedExit, Unknown, or ServiceDisconnect
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("hcs %s: the VM exited: %s", e.ID, e.ExitType)
}

// exited is the events' exit hook: it records how the VM exited. It runs
// on an HCS thread, possibly while Start holds mu, so it takes no lock.
func (v *VM) exited(n notification) {
	v.finish(v.exitError(n))
	v.logger.WithFields(logrus.Fields{"notification": n.Type, "data": n.Data}).Info("compute system exited")
}

func (v *VM) exitError(n notification) error {
	if n.Type == notifyServiceDisconnect {
		return &ExitError{ID: v.opts.ID, ExitType: "ServiceDisconnect"}
	}
	if int32(n.Status) < 0 {
		return &Error{Op: "SystemExited", ID: v.opts.ID, Code: n.Status, Message: resultMessage(n.Data)}
	}
	var st SystemExitStatus
	if n.Data != "" && json.Unmarshal([]byte(n.Data), &st) == nil {
		if st.Status < 0 {
			return &Error{Op: "SystemExited", ID: v.opts.ID, Code: uint32(st.Status)}
		}
		if st.ExitType != "" && st.ExitType != "GracefulExit" {
			return &ExitError{ID: v.opts.ID, ExitType: st.ExitType}
		}
	}
	return nil
}

// finish closes done with err as Wait's result, once.
func (v *VM) finish(err error) {
	v.doneOnce.Do(func() {
		v.waitErr = err
		close(v.done)
		if v.consoleStop != nil {
			v.consoleStop()
		}
	})
}

// hasExited reports whether done is closed.
func (v *VM) hasExited() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// running returns the handle when the VM is running.
func (v *VM) running() (handle, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state != stateRunning || v.hasExited() {
		return 0, vm.ErrNotRunning
	}
	return v.h, nil
}

// errNoExit is Wait's result when the handle was closed before HCS
// reported the exit.
var errNoExit = errors.New("hcs: handle closed before the VM reported its exit")
