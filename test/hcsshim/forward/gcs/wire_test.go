//go:build ignore

package gcs_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/Microsoft/hcsshim/internal/gcs"
	"github.com/Microsoft/hcsshim/internal/gcs/prot"
	"github.com/Microsoft/hcsshim/internal/hcs/schema1"
	hcsschema "github.com/Microsoft/hcsshim/internal/hcs/schema2"
	"github.com/Microsoft/hcsshim/internal/protocol/guestrequest"
	"github.com/Microsoft/hcsshim/internal/protocol/guestresource"
)

// lcowProcessParameters is internal/cmd's (unexported) LCOW process
// document: what hcsshim sends for a process in a container.
type lcowProcessParameters struct {
	hcsschema.ProcessParameters
	OCIProcess *specs.Process `json:"OciProcess,omitempty"`
}

// strict decodes b into v refusing fields v does not know: every field of
// a golden request is one hcsshim has.
func strict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// decodeGolden decodes one golden frame's payload with the type hcsshim's
// host uses for that message, the way its bridge does.
func decodeGolden(t *testing.T, name string, typ prot.MsgType, b []byte) string {
	t.Helper()
	req := typ&prot.MsgTypeMask == prot.MsgTypeRequest
	proc := prot.RPCProc(typ &^ prot.MsgTypeMask)
	switch {
	case typ&prot.MsgTypeMask == prot.MsgTypeNotify:
		var n prot.ContainerNotification
		n.ResultInfo.Value = &json.RawMessage{}
		if err := json.Unmarshal(b, &n); err != nil {
			t.Fatal(err)
		}
		if n.Result != 0 || n.ActivityID.String() == "00000000-0000-0000-0000-000000000000" {
			t.Fatalf("notification %+v", n)
		}
		return fmt.Sprintf("%s %s info=%s", n.Type, n.ActivityID, *n.ResultInfo.Value.(*json.RawMessage))

	case !req:
		var resp interface{ Base() *prot.ResponseBase }
		switch proc {
		case prot.RPCNegotiateProtocol:
			var r prot.NegotiateProtocolResponse
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			var caps gcs.LCOWGuestDefinedCapabilities
			if err := json.Unmarshal(r.Capabilities.GuestDefinedCapabilities, &caps); err != nil || !caps.IsSignalProcessSupported() {
				t.Fatalf("capabilities %s: %v", r.Capabilities.GuestDefinedCapabilities, err)
			}
			return fmt.Sprintf("version %d, %s, %+v", r.Version, r.Capabilities.RuntimeOsType, caps.GcsGuestCapabilities)
		case prot.RPCCreate:
			resp = &prot.ContainerCreateResponse{}
		case prot.RPCExecuteProcess:
			resp = &prot.ContainerExecuteProcessResponse{}
		case prot.RPCWaitForProcess:
			resp = &prot.ContainerWaitForProcessResponse{}
		case prot.RPCDumpStacks:
			resp = &prot.DumpStacksResponse{}
		case prot.RPCGetProperties:
			var r1 prot.ContainerGetPropertiesResponse
			if err := json.Unmarshal(b, &r1); err != nil {
				t.Fatal(err)
			}
			var r prot.ContainerGetPropertiesResponseV2
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if len(r.Properties.ProcessList) == 0 || r.Properties.Metrics == nil {
				t.Fatalf("properties %+v", r.Properties)
			}
			return fmt.Sprintf("%d processes, metrics", len(r.Properties.ProcessList))
		default:
			t.Fatalf("no hcsshim response type for %s", typ)
		}
		if err := json.Unmarshal(b, resp); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%+v", resp)
	}

	var v any
	switch proc {
	case prot.RPCNegotiateProtocol:
		v = &prot.NegotiateProtocolRequest{}
	case prot.RPCCreate:
		r := &prot.ContainerCreate{}
		r.ContainerConfig.Value = &linuxHostedSystem{}
		v = r
	case prot.RPCStart, prot.RPCShutdownGraceful, prot.RPCShutdownForced, prot.RPCDumpStacks, prot.RPCDeleteContainerState:
		v = &prot.RequestBase{}
	case prot.RPCExecuteProcess:
		r := &prot.ContainerExecuteProcess{}
		if strings.Contains(string(b), `CreateInUtilityVM`) {
			r.Settings.ProcessParameters.Value = &schema1.ProcessConfig{}
		} else {
			r.Settings.ProcessParameters.Value = &lcowProcessParameters{}
		}
		v = r
	case prot.RPCWaitForProcess:
		v = &prot.ContainerWaitForProcess{}
	case prot.RPCSignalProcess:
		v = &prot.ContainerSignalProcess{Options: &guestresource.SignalProcessOptionsLCOW{}}
	case prot.RPCResizeConsole:
		v = &prot.ContainerResizeConsole{}
	case prot.RPCGetProperties:
		v = &prot.ContainerGetProperties{}
	case prot.RPCModifySettings:
		var peek struct {
			Request guestrequest.ModificationRequest
		}
		if err := json.Unmarshal(b, &peek); err != nil {
			t.Fatal(err)
		}
		settings, ok := map[guestrequest.ResourceType]any{
			guestresource.ResourceTypeMappedVirtualDisk:    &guestresource.LCOWMappedVirtualDisk{},
			guestresource.ResourceTypeSCSIDevice:           &guestresource.SCSIDevice{},
			guestresource.ResourceTypeVPMemDevice:          &guestresource.LCOWMappedVPMemDevice{},
			guestresource.ResourceTypeCombinedLayers:       &guestresource.LCOWCombinedLayers{},
			guestresource.ResourceTypeMappedDirectory:      &guestresource.LCOWMappedDirectory{},
			guestresource.ResourceTypeNetwork:              &guestresource.LCOWNetworkAdapter{},
			guestresource.ResourceTypeContainerConstraints: &guestresource.LCOWContainerConstraints{},
			guestresource.ResourceTypeSecurityPolicy:       &guestresource.ConfidentialOptions{},
		}[peek.Request.ResourceType]
		if !ok {
			t.Fatalf("resource type %q is not one hcsshim sends a Linux guest", peek.Request.ResourceType)
		}
		v = &prot.ContainerModifySettings{Request: &guestrequest.ModificationRequest{Settings: settings}}
	default:
		t.Fatalf("no hcsshim request type for %s", typ)
	}
	if err := strict(b, v); err != nil {
		t.Fatalf("hcsshim's %T: %v", v, err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// TestUvmgcsGoldenFrames decodes every golden frame of uvmgcs's
// protocol/testdata with hcsshim's frame reader and types, and checks the
// response and notification frames against what the agent really sent in
// this run (every field of theirs, with its JSON kind, was on the wire).
func TestUvmgcsGoldenFrames(t *testing.T) {
	dir := mustEnv(t, "UVMGCS_TESTDATA")
	files, err := filepath.Glob(filepath.Join(dir, "*.frame"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden frames in %s: %v", dir, err)
	}
	wire.Lock()
	seen := map[bool]map[string]map[string]bool{} // notification? -> path -> kinds
	for typ, payloads := range wire.seen {
		note := typ&prot.MsgTypeMask == prot.MsgTypeNotify
		if seen[note] == nil {
			seen[note] = map[string]map[string]bool{}
		}
		for _, p := range payloads {
			for path, kind := range shape(t, p) {
				if seen[note][path] == nil {
					seen[note][path] = map[string]bool{}
				}
				seen[note][path][kind] = true
			}
		}
	}
	wire.Unlock()
	if len(seen[true]) == 0 || len(seen[false]) == 0 {
		t.Fatal("no agent frames recorded: the golden check runs after the other tests of this suite")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".frame")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, typ, payload, err := gcs.ReadMessage(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("hcsshim's frame reader: %v", err)
			}
			got := decodeGolden(t, name, typ, payload)
			if typ&prot.MsgTypeMask != prot.MsgTypeRequest {
				note := typ&prot.MsgTypeMask == prot.MsgTypeNotify
				var missing []string
				for path, kind := range shape(t, payload) {
					if !seen[note][path][kind] {
						missing = append(missing, path+":"+kind)
					}
				}
				sort.Strings(missing)
				if len(missing) > 0 {
					t.Fatalf("%s holds what the agent never sent: %v", name, missing)
				}
				// A successful answer or a notification holds all the agent
				// puts in one of that type.
				if !bytes.Contains(payload, []byte(`"Result":0`)) {
					return
				}
				golden := shape(t, payload)
				wire.Lock()
				sent := wire.seen[typ]
				wire.Unlock()
				if len(sent) == 0 {
					t.Fatalf("the agent sent no %s in this run", typ)
				}
				var absent []string
				for _, p := range sent {
					if !bytes.Contains(p, []byte(`"Result":0`)) {
						continue
					}
					for path, kind := range shape(t, p) {
						if golden[path] != kind && !slices.Contains(absent, path+":"+kind) {
							absent = append(absent, path+":"+kind)
						}
					}
				}
				sort.Strings(absent)
				if len(absent) > 0 {
					t.Fatalf("%s lacks what the agent sends: %v", name, absent)
				}
			}
			result(t, "golden "+name+" ("+typ.String()+")", "decoded by hcsshim")
			t.Logf("%.300s", got)
		})
	}
}

// shape maps each field path of a JSON object to its kind.
func shape(t testing.TB, b []byte) map[string]string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if prefix != "" {
				out[prefix] = "object"
			}
			for k, e := range x {
				walk(strings.TrimPrefix(prefix+"."+k, "."), e)
			}
		case []any:
			out[prefix] = "array"
			for _, e := range x {
				walk(prefix+"[]", e)
			}
		case string:
			out[prefix] = "string"
		case float64:
			out[prefix] = "number"
		case bool:
			out[prefix] = "bool"
		case nil:
			out[prefix] = "null"
		}
	}
	walk("", v)
	return out
}
