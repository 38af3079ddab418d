package hcs

import (
	"fmt"
	"strings"
	"sync"

	"github.com/Microsoft/go-winio/pkg/guid"

	"github.com/uvmgcs/gcs/transport"
)

// testRuntimeID is the runtime ID the fake reports.
const testRuntimeID = "5ac3e5ce-7e16-4a0c-9a0b-0d2a3f2d6b11"

// hook is what a fake call does: its result document and error. A call
// without a hook succeeds.
type hook func(f *fakeAPI) (string, error)

// fakeAPI stands in for vmcompute.dll: it records the calls the driver
// makes, in order, and answers each as its hook says. Notifications sent
// before a callback is registered are kept and delivered at registration,
// as HCS does.
type fakeAPI struct {
	mu      sync.Mutex
	calls   []string
	docs    map[string][]string // documents passed, by call
	sink    func(notification)
	early   []notification
	on      map[string]hook
	handles int
}

// newFake answers every call at once; shutting down and terminating make
// the VM exit.
func newFake() *fakeAPI {
	f := &fakeAPI{docs: make(map[string][]string), on: make(map[string]hook)}
	return f.set("shutdown", exits("GracefulExit")).set("terminate", exits("ForcedExit"))
}

func (f *fakeAPI) set(call string, h hook) *fakeAPI {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.on[call] = h
	return f
}

func (f *fakeAPI) do(call, doc string) (string, error) {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	if doc != "" {
		f.docs[call] = append(f.docs[call], doc)
	}
	h := f.on[call]
	f.mu.Unlock()
	if h == nil {
		return "", nil
	}
	return h(f)
}

// Calls returns the calls made so far, space-separated.
func (f *fakeAPI) Calls() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, " ")
}

func (f *fakeAPI) Docs(call string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.docs[call]...)
}

// notify delivers n to the registered callback, or keeps it until one is.
func (f *fakeAPI) notify(n notification) {
	f.mu.Lock()
	sink := f.sink
	if sink == nil {
		f.early = append(f.early, n)
	}
	f.mu.Unlock()
	if sink != nil {
		sink(n)
	}
}

// Hooks.

// pending answers "operation pending" and sends the completion, with
// status, from another goroutine.
func pending(t notificationType, status uint32) hook {
	return func(f *fakeAPI) (string, error) {
		go f.notify(notification{Type: t, Status: status})
		return "", hresult(hrOperationPending)
	}
}

// pendingForever answers "operation pending" and never completes.
func pendingForever() hook {
	return func(*fakeAPI) (string, error) { return "", hresult(hrOperationPending) }
}

// fail answers code, with a result document carrying a message.
func fail(code uint32) hook {
	return func(*fakeAPI) (string, error) {
		return fmt.Sprintf(`{"Error":%d,"ErrorMessage":"fake failure %#08x"}`, int32(code), code), hresult(code)
	}
}

// exits succeeds and then reports the VM's exit as exitType.
func exits(exitType string) hook {
	return func(f *fakeAPI) (string, error) {
		go f.notify(notification{Type: notifySystemExited, Data: fmt.Sprintf(`{"Status":0,"ExitType":%q}`, exitType)})
		return "", nil
	}
}

// pendingExits answers "operation pending" and reports the exit.
func pendingExits(exitType string) hook {
	return func(f *fakeAPI) (string, error) {
		exits(exitType)(f)
		return "", hresult(hrOperationPending)
	}
}

// The api.

func (f *fakeAPI) CreateComputeSystem(id, configuration string) (handle, string, error) {
	res, err := f.do("create", configuration)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil && !isPending(err) {
		return 0, res, err
	}
	f.handles++
	return handle(0x100 + f.handles), res, err
}

func (f *fakeAPI) OpenComputeSystem(id string) (handle, string, error) {
	res, err := f.do("open", "")
	return 0x200, res, err
}

func (f *fakeAPI) StartComputeSystem(h handle, options string) (string, error) {
	return f.do("start", "")
}

func (f *fakeAPI) ShutdownComputeSystem(h handle, options string) (string, error) {
	return f.do("shutdown", "")
}

func (f *fakeAPI) TerminateComputeSystem(h handle, options string) (string, error) {
	return f.do("terminate", "")
}

func (f *fakeAPI) ModifyComputeSystem(h handle, configuration string) (string, error) {
	return f.do("modify", configuration)
}

func (f *fakeAPI) GetComputeSystemProperties(h handle, query string) (string, string, error) {
	res, err := f.do("properties", "")
	if err != nil {
		return "", res, err
	}
	return `{"Id":"x","RuntimeId":"` + testRuntimeID + `","State":"Created"}`, res, nil
}

func (f *fakeAPI) CloseComputeSystem(h handle) error {
	_, err := f.do("close", "")
	return err
}

func (f *fakeAPI) RegisterComputeSystemCallback(h handle, sink func(notification)) (callback, error) {
	if _, err := f.do("register", ""); err != nil {
		return 0, err
	}
	f.mu.Lock()
	f.sink = sink
	early := f.early
	f.early = nil
	f.mu.Unlock()
	for _, n := range early {
		sink(n)
	}
	return 0x300, nil
}

func (f *fakeAPI) UnregisterComputeSystemCallback(c callback) error {
	_, err := f.do("unregister", "")
	f.mu.Lock()
	f.sink = nil
	f.mu.Unlock()
	return err
}

func (f *fakeAPI) GrantVmAccess(id, path string) error {
	_, err := f.do("grant", path)
	return err
}

func (f *fakeAPI) HvSocket(vmID guid.GUID) transport.Listener {
	return transport.Unix{Dir: "hvsock-" + vmID.String()}
}

var _ api = (*fakeAPI)(nil)
