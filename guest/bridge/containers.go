package bridge

import (
	"context"
	"encoding/json"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/protocol"
)

// Containers is what the bridge needs of the container runtime
// (guest/runtime/container.Manager implements it).
type Containers interface {
	Create(ctx context.Context, id string, cfg *protocol.ContainerConfig) error
	ExecProcess(ctx context.Context, id string, params *protocol.ProcessParameters, stdio protocol.VsockStdioRelaySettings) (int, error)
	// OnExit calls fn, once, with the exit code of process pid of
	// container id when it has exited and its output has drained: at once
	// (on the calling goroutine) if it already has. Until then nothing
	// waits. The returned cancel withdraws fn and reports whether it did
	// so before fn was called.
	OnExit(id string, pid int, fn func(code int)) (cancel func() bool, err error)
	Signal(ctx context.Context, id string, pid, signal int) error
	ResizeConsole(ctx context.Context, id string, pid int, height, width uint16) error
	Shutdown(ctx context.Context, id string, force bool) error
	Delete(ctx context.Context, id string) error
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	Update(ctx context.Context, id string, r *specs.LinuxResources) error
	Properties(ctx context.Context, id string, q protocol.PropertyQuery) (*protocol.Properties, error)
	List(ctx context.Context) []protocol.ContainerState
}

func (u *UVM) registerContainers(m *Mux) {
	m.HandleFunc(protocol.Create, u.create)
	m.HandleFunc(protocol.Start, u.start)
	m.HandleFunc(protocol.DeleteContainerState, u.deleteState)
	m.HandleFunc(protocol.GetProperties, u.getProperties)
	m.HandleFunc(protocol.Pause, u.pause)
	m.HandleFunc(protocol.Resume, u.resume)
}

// forContainer refuses requests that must name a container but name the VM.
func forContainer(req *Request) (string, error) {
	if req.Base.ContainerID == protocol.UVMContainerID || req.Base.ContainerID == "" {
		return "", fmt.Errorf("%s needs a container id: %w", req.Type, protocol.HrInvalidArg)
	}
	return req.Base.ContainerID, nil
}

func (u *UVM) create(ctx context.Context, req *Request) (protocol.Response, error) {
	id, err := forContainer(req)
	if err != nil {
		return nil, err
	}
	var r protocol.CreateRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	var cfg protocol.ContainerConfig
	if err := DecodeJSON([]byte(r.ContainerConfig), &cfg, "ContainerConfig"); err != nil {
		return nil, err
	}
	if err := u.Containers.Create(ctx, id, &cfg); err != nil {
		return nil, err
	}
	return &protocol.CreateResponse{SelectedProtocolVersion: protocol.ProtocolVersion}, nil
}

// start is a no-op for Linux containers beyond checking the id: the init
// starts with the first ExecuteProcess.
func (u *UVM) start(ctx context.Context, req *Request) (protocol.Response, error) {
	id, err := forContainer(req)
	if err != nil {
		return nil, err
	}
	_, err = u.Containers.Properties(ctx, id, protocol.PropertyQuery{})
	return nil, err
}

func (u *UVM) deleteState(ctx context.Context, req *Request) (protocol.Response, error) {
	id, err := forContainer(req)
	if err != nil {
		return nil, err
	}
	return nil, u.Containers.Delete(ctx, id)
}

func (u *UVM) pause(ctx context.Context, req *Request) (protocol.Response, error) {
	id, err := forContainer(req)
	if err != nil {
		return nil, err
	}
	return nil, u.Containers.Pause(ctx, id)
}

func (u *UVM) resume(ctx context.Context, req *Request) (protocol.Response, error) {
	id, err := forContainer(req)
	if err != nil {
		return nil, err
	}
	return nil, u.Containers.Resume(ctx, id)
}

func (u *UVM) getProperties(ctx context.Context, req *Request) (protocol.Response, error) {
	var r protocol.GetPropertiesRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	var q protocol.PropertyQuery
	if r.Query != "" {
		if err := DecodeJSON([]byte(r.Query), &q, "Query"); err != nil {
			return nil, err
		}
	}
	var props *protocol.Properties
	if req.Base.ContainerID == protocol.UVMContainerID {
		// The utility VM's only property is the container list.
		if len(q.PropertyTypes) != 1 || q.PropertyTypes[0] != protocol.PropertyTypeUvmgcsContainers {
			return nil, fmt.Errorf("utility VM properties %v: %w", q.PropertyTypes, protocol.HrNotImpl)
		}
		props = &protocol.Properties{UvmgcsContainers: u.Containers.List(ctx)}
	} else {
		var err error
		if props, err = u.Containers.Properties(ctx, req.Base.ContainerID, q); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(props)
	if err != nil {
		return nil, err
	}
	return &protocol.GetPropertiesResponse{Properties: string(b)}, nil
}

// modifySettings serves ModifySettings: for the utility VM's id, its
// resources; for a container's, resource updates (ContainerConstraints).
func (u *UVM) modifySettings(ctx context.Context, req *Request) (protocol.Response, error) {
	var r protocol.ModifySettingsRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if req.Base.ContainerID == protocol.UVMContainerID {
		if u.Resources == nil {
			return nil, fmt.Errorf("resource type %q for the utility VM: %w", r.Request.ResourceType, protocol.HrNotImpl)
		}
		return nil, u.Resources.Modify(ctx, r.Request)
	}
	if u.Containers == nil {
		return nil, fmt.Errorf("container %q: %w", req.Base.ContainerID, protocol.HrVmcomputeSystemNotFound)
	}
	if r.Request.ResourceType != protocol.ResourceContainerConstraints {
		return nil, fmt.Errorf("resource type %q for a container: %w", r.Request.ResourceType, protocol.HrNotImpl)
	}
	var cc protocol.ContainerConstraints
	if err := DecodeJSON(r.Request.Settings, &cc, "ContainerConstraints"); err != nil {
		return nil, err
	}
	return nil, u.Containers.Update(ctx, req.Base.ContainerID, cc.Linux)
}
