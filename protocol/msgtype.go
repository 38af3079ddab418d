package protocol

import "fmt"

// MessageType is a frame's type: kind [31:28], category [27:20], message id
// [19:8], version [7:0].
type MessageType uint32

// Frame kinds.
const (
	KindRequest      MessageType = 0x10000000
	KindResponse     MessageType = 0x20000000
	KindNotification MessageType = 0x30000000
	kindMask         MessageType = 0xF0000000

	categoryComputeSystem MessageType = 0x00100000
	version1              MessageType = 0x01
)

// Message ids. The ones above 0x0D up to 0x0F are hcsshim's own (update,
// lifecycle notification) and not used here; ids from 0x101 are uvmgcs
// extensions that a host discovers through GuestDefinedCapabilities.
const (
	idCreate               = 0x01
	idStart                = 0x02
	idShutdownGraceful     = 0x03
	idShutdownForced       = 0x04
	idExecuteProcess       = 0x05
	idWaitForProcess       = 0x06
	idSignalProcess        = 0x07
	idResizeConsole        = 0x08
	idGetProperties        = 0x09
	idModifySettings       = 0x0A
	idNegotiateProtocol    = 0x0B
	idDumpStacks           = 0x0C
	idDeleteContainerState = 0x0D
	idPause                = 0x101
	idResume               = 0x102
	idContainerNotify      = 0x01
)

// Request message types.
const (
	Create               = KindRequest | categoryComputeSystem | idCreate<<8 | version1
	Start                = KindRequest | categoryComputeSystem | idStart<<8 | version1
	ShutdownGraceful     = KindRequest | categoryComputeSystem | idShutdownGraceful<<8 | version1
	ShutdownForced       = KindRequest | categoryComputeSystem | idShutdownForced<<8 | version1
	ExecuteProcess       = KindRequest | categoryComputeSystem | idExecuteProcess<<8 | version1
	WaitForProcess       = KindRequest | categoryComputeSystem | idWaitForProcess<<8 | version1
	SignalProcess        = KindRequest | categoryComputeSystem | idSignalProcess<<8 | version1
	ResizeConsole        = KindRequest | categoryComputeSystem | idResizeConsole<<8 | version1
	GetProperties        = KindRequest | categoryComputeSystem | idGetProperties<<8 | version1
	ModifySettings       = KindRequest | categoryComputeSystem | idModifySettings<<8 | version1
	NegotiateProtocol    = KindRequest | categoryComputeSystem | idNegotiateProtocol<<8 | version1
	DumpStacks           = KindRequest | categoryComputeSystem | idDumpStacks<<8 | version1
	DeleteContainerState = KindRequest | categoryComputeSystem | idDeleteContainerState<<8 | version1
	// Pause and Resume are uvmgcs extensions (see GuestDefinedCapabilities).
	Pause  = KindRequest | categoryComputeSystem | idPause<<8 | version1
	Resume = KindRequest | categoryComputeSystem | idResume<<8 | version1

	// ContainerNotification is the one notification type: 0x30100101.
	ContainerNotification = KindNotification | categoryComputeSystem | idContainerNotify<<8 | version1
)

// Kind returns the kind nibble (KindRequest, KindResponse, KindNotification).
func (t MessageType) Kind() MessageType { return t & kindMask }

// Response returns the response type that answers request type t.
func (t MessageType) Response() MessageType { return t&^kindMask | KindResponse }

// Request returns the request type that a response type t answers.
func (t MessageType) Request() MessageType { return t&^kindMask | KindRequest }

var names = map[MessageType]string{
	Create:               "Create",
	Start:                "Start",
	ShutdownGraceful:     "ShutdownGraceful",
	ShutdownForced:       "ShutdownForced",
	ExecuteProcess:       "ExecuteProcess",
	WaitForProcess:       "WaitForProcess",
	SignalProcess:        "SignalProcess",
	ResizeConsole:        "ResizeConsole",
	GetProperties:        "GetProperties",
	ModifySettings:       "ModifySettings",
	NegotiateProtocol:    "NegotiateProtocol",
	DumpStacks:           "DumpStacks",
	DeleteContainerState: "DeleteContainerState",
	Pause:                "Pause",
	Resume:               "Resume",
}

// String names a message type, e.g. "ExecuteProcess", "ExecuteProcess response".
func (t MessageType) String() string {
	switch t.Kind() {
	case KindRequest:
		if n, ok := names[t]; ok {
			return n
		}
	case KindResponse:
		if n, ok := names[t.Request()]; ok {
			return n + " response"
		}
	case KindNotification:
		if t == ContainerNotification {
			return "ContainerNotification"
		}
	}
	return fmt.Sprintf("0x%08x", uint32(t))
}
