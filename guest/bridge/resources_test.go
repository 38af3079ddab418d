package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/protocol"
)

func TestResourceMuxRouting(t *testing.T) {
	ctx := context.Background()
	m := NewResourceMux()
	var got []string
	record := func(ctx context.Context, d *protocol.MappedVirtualDisk) error {
		got = append(got, d.MountPath)
		return nil
	}
	var order []string
	mw := func(name string) ResourceMiddleware {
		return func(next ResourceHandler) ResourceHandler {
			return ResourceHandlerFunc(func(ctx context.Context, r *ResourceRequest) error {
				order = append(order, name+" "+r.RequestType)
				return next.ServeResource(ctx, r)
			})
		}
	}
	Route[protocol.MappedVirtualDisk](m, protocol.ResourceMappedVirtualDisk,
		Ops[protocol.MappedVirtualDisk]{Add: record, Remove: record}, mw("outer"), mw("inner"))
	Route[protocol.SCSIDevice](m, protocol.ResourceSCSIDevice, Ops[protocol.SCSIDevice]{})

	req := func(rt, op, settings string) protocol.ModificationRequest {
		return protocol.ModificationRequest{ResourceType: rt, RequestType: op, Settings: json.RawMessage(settings)}
	}
	if err := m.Modify(ctx, req(protocol.ResourceMappedVirtualDisk, "", `{"MountPath":"/a"}`)); err != nil {
		t.Fatal(err)
	}
	if err := m.Modify(ctx, req(protocol.ResourceMappedVirtualDisk, "Remove", `{"MountPath":"/b"}`)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[/a /b]" || fmt.Sprint(order) != "[outer Add inner Add outer Remove inner Remove]" {
		t.Fatalf("served %v through %v", got, order)
	}
	for _, tc := range []struct {
		name string
		req  protocol.ModificationRequest
		want protocol.HResult
	}{
		{"unknown type", req("Floppy", "Add", `{}`), protocol.HrNotImpl},
		{"update disk", req(protocol.ResourceMappedVirtualDisk, "Update", `{}`), protocol.HrNotImpl},
		{"add scsi device", req(protocol.ResourceSCSIDevice, "Add", `{}`), protocol.HrNotImpl},
		{"bad request type", req(protocol.ResourceMappedVirtualDisk, "Frob", `{}`), protocol.HrInvalidArg},
		{"no settings", req(protocol.ResourceMappedVirtualDisk, "", ``), protocol.HrInvalidArg},
		{"bad json", req(protocol.ResourceMappedVirtualDisk, "", `{"Lun":"x"}`), protocol.HrVmcomputeInvalidJSON},
	} {
		if err := m.Modify(ctx, tc.req); resultOf(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if len(got) != 2 {
		t.Fatalf("refused requests reached the handler: %v", got)
	}
}

func TestResultOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want protocol.HResult
	}{
		{nil, protocol.HrOK},
		{errors.New("plain"), protocol.HrFail},
		{fmt.Errorf("x: %w", protocol.HrVmcomputeSystemNotFound), protocol.HrVmcomputeSystemNotFound},
		{fmt.Errorf("x: %w", errdefs.ErrInvalidArgument), protocol.HrInvalidArg},
		{fmt.Errorf("x: %w", errdefs.ErrNotImplemented), protocol.HrNotImpl},
		{fmt.Errorf("x: %w", errdefs.ErrFailedPrecondition), protocol.HrVmcomputeInvalidState},
		{fmt.Errorf("x: %w", errdefs.ErrNotFound), protocol.HrNotFound},
		{fmt.Errorf("x: %w", errdefs.ErrAlreadyExists), protocol.HrVmcomputeSystemAlreadyExists},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), protocol.HrVmcomputeTimeout},
		{fmt.Errorf("mount: %w", unix.ENODEV), protocol.HrFail},
		// An explicit code wins over the kind.
		{fmt.Errorf("%w: %w", protocol.HrVmcomputeInvalidJSON, errdefs.ErrInvalidArgument), protocol.HrVmcomputeInvalidJSON},
	} {
		if got := resultOf(tc.err); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.err, got, tc.want)
		}
	}
}
