package bridge

import (
	"context"
	"fmt"

	"github.com/uvmgcs/gcs/protocol"
)

// Resources serves ModifySettings addressed to the utility VM: the request
// as the host sent it, settings still encoded. A *ResourceMux is the one
// the agent uses.
type Resources interface {
	Modify(ctx context.Context, req protocol.ModificationRequest) error
}

// ResourceRequest is a ModifySettings request on the utility VM after the
// ResourceMux decoded it.
type ResourceRequest struct {
	// RequestType is protocol.RequestTypeAdd, Remove or Update, never empty.
	RequestType string
	// ResourceType is one of the protocol.Resource* names.
	ResourceType string
	// Settings is the decoded settings: a *T for a route registered with
	// Route[T].
	Settings any
}

// ResourceHandler serves one decoded resource request.
type ResourceHandler interface {
	ServeResource(ctx context.Context, r *ResourceRequest) error
}

// ResourceHandlerFunc adapts a function to a ResourceHandler.
type ResourceHandlerFunc func(ctx context.Context, r *ResourceRequest) error

// ServeResource calls f.
func (f ResourceHandlerFunc) ServeResource(ctx context.Context, r *ResourceRequest) error {
	return f(ctx, r)
}

// ResourceMiddleware wraps the handler of one resource type, e.g. to load
// the kernel modules it needs first.
type ResourceMiddleware func(ResourceHandler) ResourceHandler

// Ops serves one resource type's request types with functions of its
// decoded settings; a nil one is not implemented.
type Ops[T any] struct {
	Add, Remove, Update func(ctx context.Context, settings *T) error
}

// ServeResource calls the function for r's request type.
func (o Ops[T]) ServeResource(ctx context.Context, r *ResourceRequest) error {
	var f func(context.Context, *T) error
	switch r.RequestType {
	case protocol.RequestTypeAdd:
		f = o.Add
	case protocol.RequestTypeRemove:
		f = o.Remove
	case protocol.RequestTypeUpdate:
		f = o.Update
	}
	if f == nil {
		return fmt.Errorf("%s %s: %w", r.RequestType, r.ResourceType, protocol.HrNotImpl)
	}
	s, ok := r.Settings.(*T)
	if !ok {
		return fmt.Errorf("%s settings are a %T: %w", r.ResourceType, r.Settings, protocol.HrFail)
	}
	return f(ctx, s)
}

// ResourceMux routes ModifySettings on the utility VM by resource type. It
// decodes each request once, into the settings type its route names, and
// hands the result through the route's middleware to its handler.
// Register before serving.
type ResourceMux struct {
	routes map[string]resourceRoute
}

type resourceRoute struct {
	decode func(b []byte, what string) (any, error)
	h      ResourceHandler
}

// NewResourceMux returns an empty ResourceMux.
func NewResourceMux() *ResourceMux {
	return &ResourceMux{routes: make(map[string]resourceRoute)}
}

// Route registers h for resourceType, whose settings decode into a T. The
// middleware wraps h, the first outermost.
func Route[T any](m *ResourceMux, resourceType string, h ResourceHandler, mw ...ResourceMiddleware) {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	m.routes[resourceType] = resourceRoute{
		decode: func(b []byte, what string) (any, error) {
			v := new(T)
			return v, DecodeJSON(b, v, what)
		},
		h: h,
	}
}

// Modify decodes req and serves it: an unknown resource type is
// HrNotImpl, an unknown request type or missing settings HrInvalidArg,
// settings that do not decode HrVmcomputeInvalidJSON.
func (m *ResourceMux) Modify(ctx context.Context, req protocol.ModificationRequest) error {
	op := req.RequestType
	if op == "" {
		op = protocol.RequestTypeAdd
	}
	if op != protocol.RequestTypeAdd && op != protocol.RequestTypeRemove && op != protocol.RequestTypeUpdate {
		return fmt.Errorf("%s: request type %q: %w", req.ResourceType, req.RequestType, protocol.HrInvalidArg)
	}
	route, ok := m.routes[req.ResourceType]
	if !ok {
		return fmt.Errorf("%s %s on the utility VM: %w", op, req.ResourceType, protocol.HrNotImpl)
	}
	if len(req.Settings) == 0 {
		return fmt.Errorf("%s: no settings: %w", req.ResourceType, protocol.HrInvalidArg)
	}
	settings, err := route.decode(req.Settings, req.ResourceType+" settings")
	if err != nil {
		return err
	}
	return route.h.ServeResource(ctx, &ResourceRequest{RequestType: op, ResourceType: req.ResourceType, Settings: settings})
}
