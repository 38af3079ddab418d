package protocol

import "encoding/json"

// UVMContainerID addresses the utility VM itself rather than a container.
const UVMContainerID = "00000000-0000-0000-0000-000000000000"

// ProtocolVersion is the only bridge protocol version spoken.
const ProtocolVersion = 4

// RequestBase starts every request body.
type RequestBase struct {
	ContainerID string `json:"ContainerId"`
	ActivityID  string `json:"ActivityId"`
	// TraceContext carries W3C trace context (traceparent, tracestate).
	TraceContext map[string]string `json:"otsc,omitempty"`
}

// Base returns the request's base, so every request type satisfies Request.
func (r *RequestBase) Base() *RequestBase { return r }

// Request is any request body.
type Request interface{ Base() *RequestBase }

// ErrorRecord is one entry of a response's ErrorRecords.
type ErrorRecord struct {
	Result       int32
	Message      string
	StackTrace   string `json:",omitempty"`
	ModuleName   string
	FileName     string
	Line         uint32
	FunctionName string `json:",omitempty"`
}

// ResponseBase starts every response body.
type ResponseBase struct {
	Result       int32
	ErrorMessage string        `json:",omitempty"`
	ActivityID   string        `json:"ActivityId,omitempty"`
	ErrorRecords []ErrorRecord `json:",omitempty"`
}

// Err returns the response's failure as an *Error, or nil on success.
func (r *ResponseBase) Err(op MessageType) error {
	if r.Result >= 0 {
		return nil
	}
	msg := r.ErrorMessage
	if msg == "" && len(r.ErrorRecords) > 0 {
		msg = r.ErrorRecords[0].Message
	}
	return &Error{Op: op, Result: HResult(r.Result), Message: msg}
}

// NegotiateProtocolRequest opens every connection.
type NegotiateProtocolRequest struct {
	RequestBase
	MinimumVersion uint32
	MaximumVersion uint32
}

// SchemaVersion is an HCS schema version.
type SchemaVersion struct {
	Major uint32
	Minor uint32
}

// GuestDefinedCapabilities are the Linux guest's own capability flags. The
// Uvmgcs* fields are extensions; hcsshim ignores them.
type GuestDefinedCapabilities struct {
	NamespaceAddRequestSupported  bool `json:",omitempty"`
	SignalProcessSupported        bool `json:",omitempty"`
	DumpStacksSupported           bool `json:",omitempty"`
	DeleteContainerStateSupported bool `json:",omitempty"`
	// UvmgcsPauseResumeSupported: the Pause and Resume messages are served.
	UvmgcsPauseResumeSupported bool `json:",omitempty"`
}

// Capabilities is NegotiateProtocol's answer.
type Capabilities struct {
	SendHostCreateMessage      bool
	SendHostStartMessage       bool
	HvSocketConfigOnStartup    bool
	SendLifecycleNotifications bool `json:",omitempty"`
	SupportedSchemaVersions    []SchemaVersion
	RuntimeOsType              string
	GuestDefinedCapabilities   GuestDefinedCapabilities
}

// NegotiateProtocolResponse answers NegotiateProtocol.
type NegotiateProtocolResponse struct {
	ResponseBase
	Version      uint32 `json:",omitempty"`
	Capabilities Capabilities
}

// CreateRequest creates a container; ContainerConfig is a JSON string holding
// a ContainerConfig.
type CreateRequest struct {
	RequestBase
	ContainerConfig   string
	SupportedVersions *ProtocolSupport `json:",omitempty"`
}

// ProtocolSupport is the version range a Create request offers.
type ProtocolSupport struct {
	MinimumVersion         string `json:",omitempty"`
	MaximumVersion         string `json:",omitempty"`
	MinimumProtocolVersion uint32
	MaximumProtocolVersion uint32
}

// ContainerConfig is the decoded form of CreateRequest.ContainerConfig.
type ContainerConfig struct {
	SchemaVersion    SchemaVersion
	OciBundlePath    string          `json:",omitempty"`
	OciSpecification json.RawMessage `json:",omitempty"`
	ScratchDirPath   string          `json:",omitempty"`
}

// CreateResponse answers Create.
type CreateResponse struct {
	ResponseBase
	SelectedVersion         string `json:",omitempty"`
	SelectedProtocolVersion uint32
}

// VsockStdioRelaySettings names the ports the guest dials for each stream;
// 0 means no such stream.
type VsockStdioRelaySettings struct {
	StdIn  uint32 `json:",omitempty"`
	StdOut uint32 `json:",omitempty"`
	StdErr uint32 `json:",omitempty"`
}

// ExecuteProcessSettings is ExecuteProcessRequest.Settings. ProcessParameters
// is a JSON string holding a ProcessParameters.
type ExecuteProcessSettings struct {
	ProcessParameters       string
	VsockStdioRelaySettings VsockStdioRelaySettings
}

// ExecuteProcessRequest starts a process: a container's init, an exec in a
// container, or a process in the utility VM.
type ExecuteProcessRequest struct {
	RequestBase
	Settings ExecuteProcessSettings
}

// ProcessParameters is the decoded form of ExecuteProcessSettings.ProcessParameters.
type ProcessParameters struct {
	CommandLine      string            `json:",omitempty"`
	CommandArgs      []string          `json:",omitempty"`
	WorkingDirectory string            `json:",omitempty"`
	Environment      map[string]string `json:",omitempty"`
	EmulateConsole   bool              `json:",omitempty"`
	CreateStdInPipe  bool              `json:",omitempty"`
	CreateStdOutPipe bool              `json:",omitempty"`
	CreateStdErrPipe bool              `json:",omitempty"`
	// ConsoleSize is [height, width] for a console process.
	ConsoleSize []uint16 `json:",omitempty"`
	// CreateInUtilityVM runs the process in the utility VM, not a container.
	CreateInUtilityVM bool            `json:",omitempty"`
	OciSpecification  json.RawMessage `json:",omitempty"`
	// OciProcess (an OCI runtime-spec Process) makes this an exec.
	OciProcess json.RawMessage `json:",omitempty"`
}

// ExecuteProcessResponse answers ExecuteProcess.
type ExecuteProcessResponse struct {
	ResponseBase
	ProcessID uint32 `json:"ProcessId"`
}

// InfiniteWait is TimeoutInMs for a wait without a deadline.
const InfiniteWait = 0xFFFFFFFF

// WaitForProcessRequest waits for a process to exit.
type WaitForProcessRequest struct {
	RequestBase
	ProcessID   uint32 `json:"ProcessId"`
	TimeoutInMs uint32
}

// WaitForProcessResponse carries the exit code once the process's output
// has been relayed.
type WaitForProcessResponse struct {
	ResponseBase
	ExitCode uint32
}

// SignalProcessOptions is the Linux form of SignalProcessRequest.Options.
type SignalProcessOptions struct {
	Signal int32
}

// SignalProcessRequest signals a process.
type SignalProcessRequest struct {
	RequestBase
	ProcessID uint32                `json:"ProcessId"`
	Options   *SignalProcessOptions `json:",omitempty"`
}

// ResizeConsoleRequest resizes a console process's terminal.
type ResizeConsoleRequest struct {
	RequestBase
	ProcessID uint32 `json:"ProcessId"`
	Height    uint16
	Width     uint16
}

// GetPropertiesRequest asks for container properties; Query is a JSON string
// holding a PropertyQuery.
type GetPropertiesRequest struct {
	RequestBase
	Query string
}

// Property types a PropertyQuery may name.
const (
	PropertyTypeProcessList = "ProcessList"
	PropertyTypeStatistics  = "Statistics"
	// PropertyTypeUvmgcsState (extension) asks for a container's state.
	PropertyTypeUvmgcsState = "UvmgcsState"
	// PropertyTypeUvmgcsContainers (extension, on the utility VM's id)
	// asks for every container's state.
	PropertyTypeUvmgcsContainers = "UvmgcsContainers"
)

// Container states in ContainerState.Status, as runc names them.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusPaused  = "paused"
	StatusStopped = "stopped"
)

// ContainerState is a container as the extension property types report it.
type ContainerState struct {
	ID       string `json:"Id"`
	Status   string
	Pid      int    `json:",omitempty"`
	Bundle   string `json:",omitempty"`
	Rootfs   string `json:",omitempty"`
	ExitCode int    `json:",omitempty"`
}

// PropertyQuery is the decoded GetPropertiesRequest.Query.
type PropertyQuery struct {
	PropertyTypes []string `json:",omitempty"`
}

// GetPropertiesResponse answers GetProperties; Properties is a JSON string
// holding a Properties.
type GetPropertiesResponse struct {
	ResponseBase
	Properties string
}

// ProcessDetails is one ProcessList entry.
type ProcessDetails struct {
	ProcessID uint32 `json:"ProcessId"`
}

// Properties is the decoded GetPropertiesResponse.Properties. LCOWMetrics
// holds cgroup statistics.
type Properties struct {
	ProcessList []ProcessDetails `json:",omitempty"`
	LCOWMetrics json.RawMessage  `json:",omitempty"`
	// Extensions; hcsshim never asks for them.
	UvmgcsState      *ContainerState  `json:",omitempty"`
	UvmgcsContainers []ContainerState `json:",omitempty"`
}

// Modify request types.
const (
	RequestTypeAdd    = "Add"
	RequestTypeRemove = "Remove"
	RequestTypeUpdate = "Update"
)

// ModificationRequest is ModifySettingsRequest.Request. An empty RequestType
// means Add; Settings' shape depends on ResourceType.
type ModificationRequest struct {
	ResourceType string          `json:",omitempty"`
	RequestType  string          `json:",omitempty"`
	Settings     json.RawMessage `json:",omitempty"`
}

// ModifySettingsRequest adds, removes or updates a resource.
type ModifySettingsRequest struct {
	RequestBase
	Request ModificationRequest
}

// DumpStacksResponse answers DumpStacks.
type DumpStacksResponse struct {
	ResponseBase
	GuestStacks string
}

// Notification types.
const (
	NotificationUnexpectedExit = "UnexpectedExit"
	NotificationGracefulExit   = "GracefulExit"
	NotificationForcedExit     = "ForcedExit"
)

// ContainerNotificationMessage tells the host a container's init exited.
type ContainerNotificationMessage struct {
	RequestBase
	Type       string
	Operation  string
	Result     int32
	ResultInfo json.RawMessage `json:",omitempty"`
}

// Response returns the response's base, so every response type satisfies
// Response.
func (r *ResponseBase) Response() *ResponseBase { return r }

// Response is any response body.
type Response interface{ Response() *ResponseBase }
