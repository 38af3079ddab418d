package qmp

import (
	"encoding/json"
	"fmt"
	"time"
)

// maxLine bounds one QMP message. QEMU's largest routine answers (query-qmp-schema)
// are a few hundred KiB; anything past this is a broken or hostile peer.
const maxLine = 16 << 20

// Error is QMP's answer to a command that failed: {"error":{"class":..,"desc":..}}.
// Class is one of QEMU's QapiErrorClass names, e.g. "GenericError",
// "CommandNotFound", "DeviceNotFound".
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return fmt.Sprintf("qmp error %s: %s", e.Class, e.Desc) }

// Event is one asynchronous notification, e.g. DEVICE_DELETED or SHUTDOWN.
type Event struct {
	Name      string
	Data      json.RawMessage // the "data" member; nil when the event has none
	Timestamp time.Time
}

// Version is QEMU's version from the greeting.
type Version struct {
	Major, Minor, Micro int
	Package             string
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro) }

// Greeting is what QEMU says on connect.
type Greeting struct {
	Version      Version
	Capabilities []string
}

// request is one command on the wire.
type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

// message is any line QEMU sends: a greeting, an answer, or an event.
type message struct {
	QMP *struct {
		Version struct {
			QEMU struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
				Micro int `json:"micro"`
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
		Capabilities []string `json:"capabilities"`
	} `json:"QMP"`

	ID     json.RawMessage `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`

	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// kind tells what a decoded message is.
type kind int

const (
	kindUnknown kind = iota
	kindGreeting
	kindAnswer
	kindEvent
)

func (m *message) kind() kind {
	switch {
	case m.QMP != nil:
		return kindGreeting
	case m.Event != "":
		return kindEvent
	case m.Return != nil || m.Error != nil:
		return kindAnswer
	}
	return kindUnknown
}

// decode parses one line from the peer.
func decode(line []byte) (*message, error) {
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("decode qmp message: %w", err)
	}
	if m.kind() == kindUnknown {
		return nil, fmt.Errorf("decode qmp message: neither greeting, answer nor event: %.200q", line)
	}
	if m.Error != nil && m.Error.Class == "" && m.Error.Desc == "" {
		return nil, fmt.Errorf("decode qmp message: empty error: %.200q", line)
	}
	return &m, nil
}

func (m *message) greeting() Greeting {
	v := m.QMP.Version
	return Greeting{
		Version:      Version{Major: v.QEMU.Major, Minor: v.QEMU.Minor, Micro: v.QEMU.Micro, Package: v.Package},
		Capabilities: m.QMP.Capabilities,
	}
}

func (m *message) event() Event {
	e := Event{Name: m.Event, Data: m.Data}
	if m.Timestamp != nil && m.Timestamp.Seconds >= 0 {
		e.Timestamp = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*int64(time.Microsecond))
	}
	return e
}

// idKey is how an answer's id is matched to its caller: the id's JSON text.
func idKey(id uint64) string { return fmt.Sprint(id) }
