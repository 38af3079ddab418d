package hcs

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// testVM is a VM on the fake with real (empty) boot files, so that the
// config validates.
func testVM(t *testing.T, f *fakeAPI) *VM {
	t.Helper()
	dir := t.TempDir()
	cfg := vm.Config{Kernel: touch(t, dir, "vmlinux"), Initrd: touch(t, dir, "initrd.img")}
	v := newVM(cfg, Options{ID: "uvm-test"}, f, nil)
	v.exitWait = 2 * time.Second
	v.logger = quiet()
	t.Cleanup(func() { v.Shutdown(context.Background()) })
	return v
}

func touch(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantCalls(t *testing.T, f *fakeAPI, want string) {
	t.Helper()
	if got := f.Calls(); got != want {
		t.Errorf("calls:\n got %q\nwant %q", got, want)
	}
}

// quiet is a logger for the driver's lines in tests.
func quiet() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func ctxWithin(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(log.WithLogger(context.Background(), quiet()), d)
	t.Cleanup(cancel)
	return ctx
}

// asyncStart is HCS's usual answer: create and start complete by
// notification.
func asyncStart() *fakeAPI {
	return newFake().
		set("create", pending(notifySystemCreateCompleted, 0)).
		set("start", pending(notifySystemStartCompleted, 0))
}

// The whole life of a VM in the order the driver talks to HCS: create,
// register the callback, wait for the create, read the runtime ID, start
// and wait; grant and modify for each device; then a graceful shutdown
// that does not finish within ctx, so a terminate, and the handle closed.
func TestLifecycleCallSequence(t *testing.T) {
	f := asyncStart().set("shutdown", pendingForever()).set("terminate", pendingExits("ForcedExit"))
	v := testVM(t, f)
	ctx := ctxWithin(t, 10*time.Second)
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "create register properties start")
	docs := f.Docs("create")
	if len(docs) != 1 {
		t.Fatalf("create documents: %q", docs)
	}
	var doc ComputeSystem
	if err := json.Unmarshal([]byte(docs[0]), &doc); err != nil {
		t.Fatal(err)
	}
	if lkd := doc.VirtualMachine.Chipset.LinuxKernelDirect; lkd.KernelFilePath != v.cfg.Kernel || lkd.InitRdPath != v.cfg.Initrd {
		t.Errorf("boot files %+v, want %s and %s", lkd, v.cfg.Kernel, v.cfg.Initrd)
	}
	if l, ok := v.Agent().(transport.Unix); !ok || l.Dir != "hvsock-"+testRuntimeID {
		t.Errorf("Agent() = %#v, want the hvsocket listener for %s", v.Agent(), testRuntimeID)
	}

	dir := t.TempDir()
	scratch, layer, pmem := touch(t, dir, "scratch.vhdx"), touch(t, dir, "layer.vhdx"), touch(t, dir, "layer.vhd")
	d0, err := v.AddSCSIDisk(ctx, scratch, false)
	if err != nil {
		t.Fatal(err)
	}
	d1, err := v.AddSCSIDisk(ctx, layer, true)
	if err != nil {
		t.Fatal(err)
	}
	if d0 != (vm.Disk{Controller: 0, LUN: 0}) || d1 != (vm.Disk{Controller: 0, LUN: 1}) {
		t.Errorf("disks %v %v, want 0:0 and 0:1", d0, d1)
	}
	if err := v.RemoveSCSIDisk(ctx, d0); err != nil {
		t.Fatal(err)
	}
	if err := v.RemoveSCSIDisk(ctx, d0); err != nil { // not there: not an error
		t.Fatal(err)
	}
	n, err := v.AddPMem(ctx, pmem)
	if err != nil || n != 0 {
		t.Fatalf("AddPMem = %d, %v", n, err)
	}
	wantModifies := []*ModifySettingRequest{
		addSCSIRequest(d0, scratch, false),
		addSCSIRequest(d1, layer, true),
		removeSCSIRequest(d0),
		addVPMemRequest(0, pmem),
	}
	for i, doc := range f.Docs("modify") {
		if want := mustJSON(t, wantModifies[i]); doc != want {
			t.Errorf("modify %d: %s, want %s", i, doc, want)
		}
	}
	if got := f.Docs("grant"); len(got) != 3 || got[0] != scratch || got[1] != layer || got[2] != pmem {
		t.Errorf("granted %q", got)
	}

	sctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := v.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "create register properties start grant modify grant modify modify grant modify "+
		"shutdown terminate unregister close")
	var exit *ExitError
	if err := v.Wait(); !errors.As(err, &exit) || exit.ExitType != "ForcedExit" {
		t.Errorf("Wait() = %v, want a ForcedExit", err)
	}
	if err := v.Shutdown(context.Background()); err != nil { // idempotent
		t.Fatal(err)
	}
	wantCalls(t, f, "create register properties start grant modify grant modify modify grant modify "+
		"shutdown terminate unregister close")
	if _, err := v.AddSCSIDisk(ctx, scratch, false); !errors.Is(err, vm.ErrNotRunning) {
		t.Errorf("AddSCSIDisk after Shutdown: %v", err)
	}
}

// HCS may also complete create and start synchronously.
func TestStartSynchronous(t *testing.T) {
	f := newFake()
	v := testVM(t, f)
	if err := v.Start(ctxWithin(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := v.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "create register properties start shutdown unregister close")
	if err := v.Wait(); err != nil {
		t.Errorf("Wait() after a graceful exit = %v", err)
	}
}

func TestStartCreateRefused(t *testing.T) {
	f := newFake().set("create", fail(0xC037010F))
	v := testVM(t, f)
	err := v.Start(ctxWithin(t, 5*time.Second))
	if !errors.Is(err, protocol.HrVmcomputeSystemAlreadyExists) {
		t.Fatalf("Start = %v, want SYSTEM_ALREADY_EXISTS", err)
	}
	var he *Error
	if !errors.As(err, &he) || he.Op != "HcsCreateComputeSystem" || he.Code != 0xC037010F || he.Message != "fake failure 0xc037010f" {
		t.Errorf("error %#v", he)
	}
	wantCalls(t, f, "create")
	select {
	case <-v.Done():
	default:
		t.Error("Done not closed after a failed Start")
	}
	if err := v.Start(context.Background()); !errors.Is(err, vm.ErrNotRunning) {
		t.Errorf("second Start = %v", err)
	}
}

// A start that completes with a failure, an HRESULT the protocol has no
// name for: the error carries the code, and the system is torn down.
func TestStartCompletionFails(t *testing.T) {
	f := newFake().
		set("create", pending(notifySystemCreateCompleted, 0)).
		set("start", pending(notifySystemStartCompleted, 0x80370106)).
		set("terminate", exits("ForcedExit"))
	v := testVM(t, f)
	err := v.Start(ctxWithin(t, 5*time.Second))
	var he *Error
	if !errors.As(err, &he) || he.Code != 0x80370106 || he.Op != "HcsStartComputeSystem" {
		t.Fatalf("Start = %v, want an *Error with 0x80370106", err)
	}
	if errors.Unwrap(he) != nil {
		t.Errorf("unknown code unwraps to %v", errors.Unwrap(he))
	}
	wantCalls(t, f, "create register properties start terminate unregister close")
}

// A completion that never comes ends with ctx; the VM is terminated.
func TestStartDeadline(t *testing.T) {
	f := newFake().set("start", pendingForever()).set("terminate", exits("ForcedExit"))
	v := testVM(t, f)
	err := v.Start(ctxWithin(t, 50*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start = %v, want the deadline", err)
	}
	wantCalls(t, f, "create register properties start terminate unregister close")
}

// The VM exits while starting: the wait ends at once.
func TestStartExitsMidway(t *testing.T) {
	f := newFake().set("start", pendingExits("UnexpectedExit"))
	v := testVM(t, f)
	if err := v.Start(ctxWithin(t, 5*time.Second)); !errors.Is(err, errExited) {
		t.Fatalf("Start = %v, want the exit", err)
	}
	wantCalls(t, f, "create register properties start unregister close")
}

// Not found while tearing down is success.
func TestShutdownSystemGone(t *testing.T) {
	f := newFake().set("shutdown", fail(hrSystemNotFound)).set("terminate", fail(hrSystemNotFound))
	v := testVM(t, f)
	if err := v.Start(ctxWithin(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := v.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	wantCalls(t, f, "create register properties start shutdown terminate unregister close")
	if err := v.Wait(); !errors.Is(err, errNoExit) {
		t.Errorf("Wait() = %v", err)
	}
}

// A terminate HCS refuses is Shutdown's error; the handle is closed anyway.
func TestShutdownTerminateRefused(t *testing.T) {
	f := newFake().set("shutdown", fail(0x80370105)).set("terminate", fail(0x80070005))
	v := testVM(t, f)
	if err := v.Start(ctxWithin(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	err := v.Shutdown(context.Background())
	var he *Error
	if !errors.As(err, &he) || he.Code != 0x80070005 || he.Op != "HcsTerminateComputeSystem" {
		t.Fatalf("Shutdown = %v", err)
	}
	wantCalls(t, f, "create register properties start shutdown terminate unregister close")
}

// The guest powers off on its own: Done closes, and Shutdown only lets go.
func TestExitWhileRunning(t *testing.T) {
	f := newFake()
	v := testVM(t, f)
	if err := v.Start(ctxWithin(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	f.notify(notification{Type: notifySystemExited, Data: `{"Status":0,"ExitType":"UnexpectedExit"}`})
	select {
	case <-v.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	var exit *ExitError
	if err := v.Wait(); !errors.As(err, &exit) || exit.ExitType != "UnexpectedExit" {
		t.Errorf("Wait() = %v", err)
	}
	if _, err := v.AddPMem(context.Background(), "x"); !errors.Is(err, vm.ErrNotRunning) {
		t.Errorf("AddPMem after exit: %v", err)
	}
	if err := v.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "create register properties start unregister close")
}

func TestShutdownBeforeStart(t *testing.T) {
	f := newFake()
	v := testVM(t, f)
	if err := v.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-v.Done()
	if err := v.Start(context.Background()); !errors.Is(err, vm.ErrNotRunning) {
		t.Errorf("Start after Shutdown = %v", err)
	}
	if v.Agent() != nil {
		t.Error("Agent before the VM ran")
	}
	wantCalls(t, f, "")
}

// A modify HCS refuses maps to the protocol's code and takes no LUN; a
// remove of a disk HCS no longer has succeeds.
func TestModifyErrors(t *testing.T) {
	f := newFake().set("modify", fail(0x80070057))
	v := testVM(t, f)
	ctx := ctxWithin(t, 5*time.Second)
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	disk := touch(t, t.TempDir(), "d.vhdx")
	if _, err := v.AddSCSIDisk(ctx, disk, false); !errors.Is(err, protocol.HrInvalidArg) {
		t.Fatalf("AddSCSIDisk = %v, want E_INVALIDARG", err)
	}
	f.set("modify", nil)
	d, err := v.AddSCSIDisk(ctx, disk, false)
	if err != nil || d.LUN != 0 {
		t.Fatalf("AddSCSIDisk = %v, %v; want LUN 0", d, err)
	}
	f.set("modify", fail(0x80070490))
	if err := v.RemoveSCSIDisk(ctx, d); err != nil {
		t.Fatalf("RemoveSCSIDisk of a disk HCS lost = %v", err)
	}
	f.set("modify", pending(notifySystemModifyCompleted, 0))
	if d, err = v.AddSCSIDisk(ctx, disk, true); err != nil || d.LUN != 0 {
		t.Fatalf("pending AddSCSIDisk = %v, %v", d, err)
	}
	f.set("grant", fail(0x80070005))
	if _, err := v.AddPMem(ctx, disk); err == nil {
		t.Fatal("AddPMem without access succeeded")
	}
	if _, err := v.AddSCSIDisk(ctx, filepath.Join(t.TempDir(), "missing.vhdx"), false); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing disk: %v", err)
	}
}

func TestNewOffWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("vmcompute.dll may be here")
	}
	v := New(vm.Config{}, Options{})
	if err := v.Start(context.Background()); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Start = %v, want ErrUnsupported", err)
	}
	if v.ID() == "" {
		t.Error("no generated ID")
	}
	<-v.Done()
}
