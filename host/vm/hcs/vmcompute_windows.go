//go:build windows

package hcs

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/Microsoft/go-winio/pkg/guid"
	"golang.org/x/sys/windows"

	"github.com/uvmgcs/gcs/transport"
)

// vmcompute.dll and the calls the driver makes, resolved on first use.
var (
	modvmcompute = windows.NewLazySystemDLL("vmcompute.dll")

	procHcsCreateComputeSystem             = modvmcompute.NewProc("HcsCreateComputeSystem")
	procHcsOpenComputeSystem               = modvmcompute.NewProc("HcsOpenComputeSystem")
	procHcsStartComputeSystem              = modvmcompute.NewProc("HcsStartComputeSystem")
	procHcsShutdownComputeSystem           = modvmcompute.NewProc("HcsShutdownComputeSystem")
	procHcsTerminateComputeSystem          = modvmcompute.NewProc("HcsTerminateComputeSystem")
	procHcsModifyComputeSystem             = modvmcompute.NewProc("HcsModifyComputeSystem")
	procHcsGetComputeSystemProperties      = modvmcompute.NewProc("HcsGetComputeSystemProperties")
	procHcsCloseComputeSystem              = modvmcompute.NewProc("HcsCloseComputeSystem")
	procHcsRegisterComputeSystemCallback   = modvmcompute.NewProc("HcsRegisterComputeSystemCallback")
	procHcsUnregisterComputeSystemCallback = modvmcompute.NewProc("HcsUnregisterComputeSystemCallback")
	procGrantVmAccess                      = modvmcompute.NewProc("GrantVmAccess")

	// theVmcompute is the process's one binding, made on first use like
	// the procs above: see vmcompute.
	theVmcompute = sync.OnceValue(newVmcompute)
)

// systemAPI is vmcompute.dll, when the host has it (Hyper-V and the
// Containers feature installed).
func systemAPI() (api, error) {
	if err := modvmcompute.Load(); err != nil {
		return nil, fmt.Errorf("hcs: %w", err)
	}
	return theVmcompute(), nil
}

// vmcompute is the api over vmcompute.dll. There is one per process: its
// notification trampoline is a Windows callback, a slot the process can
// never free, so one trampoline serves every VM and routes each
// notification to the sink registered under its context number.
type vmcompute struct {
	trampoline uintptr

	mu       sync.Mutex
	next     uintptr
	sinks    map[uintptr]func(notification) // by context number
	contexts map[callback]uintptr           // context number by callback
}

func newVmcompute() *vmcompute {
	v := &vmcompute{
		sinks:    make(map[uintptr]func(notification)),
		contexts: make(map[callback]uintptr),
	}
	v.trampoline = windows.NewCallback(v.notify)
	return v
}

// notify is the HCS_NOTIFICATION_CALLBACK: it runs on an HCS thread. data
// belongs to HCS and is copied.
func (v *vmcompute) notify(ntype, context, status uintptr, data *uint16) uintptr {
	v.mu.Lock()
	sink := v.sinks[context]
	v.mu.Unlock()
	if sink == nil {
		return 0
	}
	var doc string
	if data != nil {
		doc = windows.UTF16PtrToString(data)
	}
	sink(notification{Type: notificationType(uint32(ntype)), Status: uint32(status), Data: doc})
	return 0
}

// hcall calls an HCS function and returns its failure HRESULT as hresult.
// Its arguments may be pointers converted to uintptr in the call.
//
//go:uintptrescapes
func hcall(p *windows.LazyProc, args ...uintptr) error {
	if err := p.Find(); err != nil {
		return err
	}
	r, _, _ := p.Call(args...)
	if int32(uint32(r)) < 0 {
		return hresult(uint32(r))
	}
	return nil
}

// takeString converts and frees a string HCS allocated for the caller.
func takeString(p *uint16) string {
	if p == nil {
		return ""
	}
	s := windows.UTF16PtrToString(p)
	windows.CoTaskMemFree(unsafe.Pointer(p))
	return s
}

func utf16(s string) (*uint16, error) { return windows.UTF16PtrFromString(s) }

func (v *vmcompute) CreateComputeSystem(id, configuration string) (handle, string, error) {
	pid, err := utf16(id)
	if err != nil {
		return 0, "", err
	}
	pcfg, err := utf16(configuration)
	if err != nil {
		return 0, "", err
	}
	var h handle
	var result *uint16
	err = hcall(procHcsCreateComputeSystem, uintptr(unsafe.Pointer(pid)), uintptr(unsafe.Pointer(pcfg)),
		0, uintptr(unsafe.Pointer(&h)), uintptr(unsafe.Pointer(&result)))
	return h, takeString(result), err
}

func (v *vmcompute) OpenComputeSystem(id string) (handle, string, error) {
	pid, err := utf16(id)
	if err != nil {
		return 0, "", err
	}
	var h handle
	var result *uint16
	err = hcall(procHcsOpenComputeSystem, uintptr(unsafe.Pointer(pid)), uintptr(unsafe.Pointer(&h)),
		uintptr(unsafe.Pointer(&result)))
	return h, takeString(result), err
}

// withOptions is the shape shared by start, shutdown, terminate and
// modify: a handle, a JSON string, and a result document.
func withOptions(p *windows.LazyProc, h handle, options string) (string, error) {
	popt, err := utf16(options)
	if err != nil {
		return "", err
	}
	var result *uint16
	err = hcall(p, uintptr(h), uintptr(unsafe.Pointer(popt)), uintptr(unsafe.Pointer(&result)))
	return takeString(result), err
}

func (v *vmcompute) StartComputeSystem(h handle, options string) (string, error) {
	return withOptions(procHcsStartComputeSystem, h, options)
}

func (v *vmcompute) ShutdownComputeSystem(h handle, options string) (string, error) {
	return withOptions(procHcsShutdownComputeSystem, h, options)
}

func (v *vmcompute) TerminateComputeSystem(h handle, options string) (string, error) {
	return withOptions(procHcsTerminateComputeSystem, h, options)
}

func (v *vmcompute) ModifyComputeSystem(h handle, configuration string) (string, error) {
	return withOptions(procHcsModifyComputeSystem, h, configuration)
}

func (v *vmcompute) GetComputeSystemProperties(h handle, query string) (string, string, error) {
	pq, err := utf16(query)
	if err != nil {
		return "", "", err
	}
	var props, result *uint16
	err = hcall(procHcsGetComputeSystemProperties, uintptr(h), uintptr(unsafe.Pointer(pq)),
		uintptr(unsafe.Pointer(&props)), uintptr(unsafe.Pointer(&result)))
	return takeString(props), takeString(result), err
}

func (v *vmcompute) CloseComputeSystem(h handle) error {
	return hcall(procHcsCloseComputeSystem, uintptr(h))
}

func (v *vmcompute) RegisterComputeSystemCallback(h handle, sink func(notification)) (callback, error) {
	v.mu.Lock()
	v.next++
	ctx := v.next
	v.sinks[ctx] = sink
	v.mu.Unlock()
	var c callback
	err := hcall(procHcsRegisterComputeSystemCallback, uintptr(h), v.trampoline, ctx, uintptr(unsafe.Pointer(&c)))
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		delete(v.sinks, ctx)
		return 0, err
	}
	v.contexts[c] = ctx
	return c, nil
}

func (v *vmcompute) UnregisterComputeSystemCallback(c callback) error {
	err := hcall(procHcsUnregisterComputeSystemCallback, uintptr(c))
	v.mu.Lock()
	delete(v.sinks, v.contexts[c])
	delete(v.contexts, c)
	v.mu.Unlock()
	return err
}

func (v *vmcompute) GrantVmAccess(id, path string) error {
	pid, err := utf16(id)
	if err != nil {
		return err
	}
	ppath, err := utf16(path)
	if err != nil {
		return err
	}
	return hcall(procGrantVmAccess, uintptr(unsafe.Pointer(pid)), uintptr(unsafe.Pointer(ppath)))
}

func (v *vmcompute) HvSocket(vmID guid.GUID) transport.Listener {
	return transport.HvSock{VMID: vmID}
}

var _ api = (*vmcompute)(nil)
