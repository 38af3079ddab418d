package protocol

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var update = flag.Bool("update", false, "rewrite the golden frame files")

const activity = "2f4b1b9a-7c1e-4c43-9d5e-0a1b2c3d4e5f"

func base(cid string) RequestBase { return RequestBase{ContainerID: cid, ActivityID: activity} }

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goldenCases is one representative body per message and resource type.
func goldenCases(t *testing.T) []struct {
	name string
	typ  MessageType
	body any
} {
	params := ProcessParameters{
		CommandArgs: []string{"/bin/sh", "-c", "echo hi"}, WorkingDirectory: "/",
		Environment: map[string]string{"PATH": "/bin"}, CreateStdOutPipe: true, CreateStdErrPipe: true,
		CreateInUtilityVM: true,
	}
	ttyParams := ProcessParameters{CommandLine: "sh", EmulateConsole: true, CreateStdInPipe: true,
		CreateStdOutPipe: true, ConsoleSize: []uint16{24, 80}, OciProcess: json.RawMessage(`{"cwd":"/","args":["sh"]}`)}
	cfg := ContainerConfig{SchemaVersion: SchemaVersion{Major: 2, Minor: 1}, OciBundlePath: "/run/gcs/c/c1",
		OciSpecification: json.RawMessage(`{"ociVersion":"1.1.0"}`), ScratchDirPath: "/run/gcs/c/c1/scratch"}
	limit := int64(64 << 20)
	modify := func(rt, req string, s any) ModifySettingsRequest {
		return ModifySettingsRequest{RequestBase: base(UVMContainerID),
			Request: ModificationRequest{ResourceType: rt, RequestType: req, Settings: json.RawMessage(mustJSON(t, s))}}
	}
	verity := &VerityInfo{Ext4SizeInBytes: 4 << 20, Version: 1, Algorithm: "sha256", SuperBlock: true,
		RootDigest: "ab12", Salt: "cd34", BlockSize: 4096}
	return []struct {
		name string
		typ  MessageType
		body any
	}{
		{"negotiate-request", NegotiateProtocol, &NegotiateProtocolRequest{RequestBase: base(UVMContainerID), MinimumVersion: 4, MaximumVersion: 4}},
		{"negotiate-response", NegotiateProtocol.Response(), &NegotiateProtocolResponse{ResponseBase: ResponseBase{ActivityID: activity}, Version: 4,
			Capabilities: Capabilities{SupportedSchemaVersions: []SchemaVersion{{2, 1}}, RuntimeOsType: "Linux",
				GuestDefinedCapabilities: GuestDefinedCapabilities{NamespaceAddRequestSupported: true, SignalProcessSupported: true,
					DumpStacksSupported: true, DeleteContainerStateSupported: true, UvmgcsPauseResumeSupported: true}}}},
		{"create-request", Create, &CreateRequest{RequestBase: base("c1"), ContainerConfig: mustJSON(t, cfg)}},
		{"create-response", Create.Response(), &CreateResponse{ResponseBase: ResponseBase{ActivityID: activity}, SelectedProtocolVersion: 4}},
		{"start-request", Start, &RequestBase{ContainerID: "c1", ActivityID: activity}},
		{"shutdown-graceful-request", ShutdownGraceful, &RequestBase{ContainerID: "c1", ActivityID: activity}},
		{"shutdown-forced-request", ShutdownForced, &RequestBase{ContainerID: "c1", ActivityID: activity,
			TraceContext: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}},
		{"execute-process-request", ExecuteProcess, &ExecuteProcessRequest{RequestBase: base(UVMContainerID),
			Settings: ExecuteProcessSettings{ProcessParameters: mustJSON(t, params),
				VsockStdioRelaySettings: VsockStdioRelaySettings{StdOut: 0x40000001, StdErr: 0x40000002}}}},
		{"execute-process-tty-request", ExecuteProcess, &ExecuteProcessRequest{RequestBase: base("c1"),
			Settings: ExecuteProcessSettings{ProcessParameters: mustJSON(t, ttyParams),
				VsockStdioRelaySettings: VsockStdioRelaySettings{StdIn: 0x40000003, StdOut: 0x40000004}}}},
		{"execute-process-response", ExecuteProcess.Response(), &ExecuteProcessResponse{ResponseBase: ResponseBase{ActivityID: activity}, ProcessID: 42}},
		{"wait-for-process-request", WaitForProcess, &WaitForProcessRequest{RequestBase: base(UVMContainerID), ProcessID: 42, TimeoutInMs: InfiniteWait}},
		{"wait-for-process-response", WaitForProcess.Response(), &WaitForProcessResponse{ResponseBase: ResponseBase{ActivityID: activity}, ExitCode: 143}},
		{"signal-process-request", SignalProcess, &SignalProcessRequest{RequestBase: base("c1"), ProcessID: 42, Options: &SignalProcessOptions{Signal: 15}}},
		{"resize-console-request", ResizeConsole, &ResizeConsoleRequest{RequestBase: base("c1"), ProcessID: 42, Height: 40, Width: 120}},
		{"get-properties-request", GetProperties, &GetPropertiesRequest{RequestBase: base("c1"),
			Query: mustJSON(t, PropertyQuery{PropertyTypes: []string{PropertyTypeProcessList, PropertyTypeStatistics}})}},
		{"get-properties-response", GetProperties.Response(), &GetPropertiesResponse{ResponseBase: ResponseBase{ActivityID: activity},
			Properties: mustJSON(t, Properties{ProcessList: []ProcessDetails{{ProcessID: 1}, {ProcessID: 7}}, LCOWMetrics: json.RawMessage(`{"memory":{}}`)})}},
		{"dump-stacks-request", DumpStacks, &RequestBase{ContainerID: UVMContainerID, ActivityID: activity}},
		{"dump-stacks-response", DumpStacks.Response(), &DumpStacksResponse{ResponseBase: ResponseBase{ActivityID: activity}, GuestStacks: "goroutine 1 [running]:"}},
		{"delete-container-state-request", DeleteContainerState, &RequestBase{ContainerID: "c1", ActivityID: activity}},
		{"error-response", ExecuteProcess.Response(), &ResponseBase{Result: int32(HrVmcomputeSystemNotFound), ErrorMessage: "container \"c9\" not found",
			ActivityID: activity, ErrorRecords: []ErrorRecord{{Result: int32(HrVmcomputeSystemNotFound), Message: "container \"c9\" not found", ModuleName: "gcs"}}}},
		// As the agent sends it: the Create's ActivityId, Result 0 (an
		// HRESULT, never the exit code), ResultInfo a JSON string.
		{"container-notification", ContainerNotification, &ContainerNotificationMessage{RequestBase: base("c1"), Type: NotificationGracefulExit,
			Operation: "None", Result: 0, ResultInfo: json.RawMessage(mustJSON(t, mustJSON(t, ExitInfo{ExitCode: 143})))}},
		{"modify-mapped-virtual-disk", ModifySettings, ptr(modify(ResourceMappedVirtualDisk, RequestTypeAdd, MappedVirtualDisk{
			MountPath: "/run/mounts/scsi/m1", Controller: 0, Lun: 3, ReadOnly: true, Options: []string{"noatime"}, VerityInfo: verity}))},
		{"modify-scsi-device", ModifySettings, ptr(modify(ResourceSCSIDevice, RequestTypeRemove, SCSIDevice{Controller: 1, Lun: 2}))},
		{"modify-vpmem-device", ModifySettings, ptr(modify(ResourceVPMemDevice, RequestTypeAdd, VPMemDevice{DeviceNumber: 1, MountPath: "/run/layers/p1",
			MappingInfo: &VPMemMappingInfo{DeviceOffsetInBytes: 4096, DeviceSizeInBytes: 1 << 20}, VerityInfo: verity}))},
		{"modify-combined-layers", ModifySettings, ptr(modify(ResourceCombinedLayers, RequestTypeAdd, CombinedLayers{ContainerID: "c1",
			ContainerRootPath: "/run/gcs/c/c1/rootfs", Layers: []Layer{{ID: "l1", Path: "/run/layers/p1"}, {Path: "/run/layers/p2"}},
			ScratchPath: "/run/mounts/scsi/m2"}))},
		{"modify-mapped-directory", ModifySettings, ptr(modify(ResourceMappedDirectory, RequestTypeAdd, MappedDirectory{MountPath: "/run/mounts/d1",
			Port: 0x40000010, ShareName: "share", ReadOnly: true}))},
		{"modify-network", ModifySettings, ptr(modify(ResourceNetwork, RequestTypeAdd, NetworkAdapter{NamespaceID: "a1b2", ID: "nic1",
			MacAddress: "00-15-5D-00-00-01", DNSSuffix: "example.test", DNSServerList: "10.0.0.53", EncapOverhead: 50,
			IPConfigs: []IPConfig{{IPAddress: "10.0.0.5", PrefixLength: 24}}, Routes: []Route{{NextHop: "10.0.0.1", DestinationPrefix: "0.0.0.0/0"}}}))},
		{"modify-container-constraints", ModifySettings, &ModifySettingsRequest{RequestBase: base("c1"), Request: ModificationRequest{
			ResourceType: ResourceContainerConstraints, RequestType: RequestTypeUpdate,
			Settings: json.RawMessage(mustJSON(t, ContainerConstraints{Linux: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}}))}}},
		{"modify-security-policy", ModifySettings, ptr(modify(ResourceSecurityPolicy, "", SecurityPolicy{EnforcerType: "rego", EncodedSecurityPolicy: "cGFja2FnZQ=="}))},
	}
}

func ptr[T any](v T) *T { return &v }

// TestGoldenFrames checks every body both ways against the frame bytes on
// disk: encoding gives exactly those bytes, decoding them gives the body.
func TestGoldenFrames(t *testing.T) {
	for i, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			payload, err := json.Marshal(tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.typ.Kind() == KindRequest {
				payload = append(payload, '\n') // as hcsshim's host writes requests
			}
			frame := AppendFrame(nil, tc.typ, uint64(i+1), payload)
			path := filepath.Join("testdata", tc.name+".frame")
			if *update {
				if err := os.WriteFile(path, frame, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./protocol -run Golden -update)", err)
			}
			if !bytes.Equal(frame, want) {
				t.Fatalf("encoding drifted from %s:\n got %q\nwant %q", path, frame, want)
			}
			h, p, err := NewReader(bytes.NewReader(want), 0).Next()
			if err != nil {
				t.Fatal(err)
			}
			if h.Type != tc.typ || h.ID != uint64(i+1) {
				t.Fatalf("header %+v", h)
			}
			got := reflect.New(reflect.TypeOf(tc.body).Elem()).Interface()
			if err := json.Unmarshal(p, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.body) {
				t.Fatalf("decoded %s:\n got %+v\nwant %+v", path, got, tc.body)
			}
		})
	}
}

// TestWireNames pins the JSON names hcsshim uses, independently of the
// golden files.
func TestWireNames(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want []string
	}{
		{&ExecuteProcessResponse{ProcessID: 1}, []string{`"ProcessId":1`, `"Result":0`}},
		{&RequestBase{ContainerID: "c", ActivityID: "a", TraceContext: map[string]string{"k": "v"}}, []string{`"ContainerId":"c"`, `"ActivityId":"a"`, `"otsc":{`}},
		{&CombinedLayers{ContainerID: "c", Layers: []Layer{{ID: "x"}}}, []string{`"ContainerID":"c"`, `"Id":"x"`}},
		{&ExecuteProcessSettings{VsockStdioRelaySettings: VsockStdioRelaySettings{StdIn: 1}}, []string{`"VsockStdioRelaySettings":{"StdIn":1}`, `"ProcessParameters":""`}},
		{&ProcessParameters{CreateInUtilityVM: true, OciProcess: json.RawMessage(`{}`)}, []string{`"CreateInUtilityVM":true`, `"OciProcess":{}`}},
	} {
		b := mustJSON(t, tc.v)
		for _, w := range tc.want {
			if !bytes.Contains([]byte(b), []byte(w)) {
				t.Errorf("%T encodes as %s: missing %s", tc.v, b, w)
			}
		}
	}
}
