package agent

import (
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/uvmgcs/gcs/protocol"
)

// maxSessionRequests bounds the requests of one session input.
const maxSessionRequests = 8

// decodeSession reads a session input as requests: each a selector byte
// (an index into requestTypes), a big-endian 16-bit length and that many
// body bytes (fewer at the end of the input).
func decodeSession(data []byte) []request {
	var reqs []request
	for len(data) >= 3 && len(reqs) < maxSessionRequests {
		typ := requestTypes[int(data[0])%len(requestTypes)]
		n := min(int(binary.BigEndian.Uint16(data[1:3])), len(data)-3)
		reqs = append(reqs, request{typ: typ, body: data[3 : 3+n]})
		data = data[3+n:]
	}
	return reqs
}

// encodeSession is decodeSession's inverse, for seeds.
func encodeSession(reqs ...request) []byte {
	var out []byte
	for _, r := range reqs {
		sel := 0
		for i, t := range requestTypes {
			if t == r.typ {
				sel = i
			}
		}
		out = append(out, byte(sel))
		out = binary.BigEndian.AppendUint16(out, uint16(len(r.body)))
		out = append(out, r.body...)
	}
	return out
}

func body(containerID string, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	m["ContainerId"] = containerID
	b, _ = json.Marshal(m)
	return b
}

// execute is an ExecuteProcess of params in containerID.
func execute(containerID string, params protocol.ProcessParameters, stdio protocol.VsockStdioRelaySettings) request {
	p, _ := json.Marshal(params)
	return request{protocol.ExecuteProcess, body(containerID, protocol.ExecuteProcessRequest{
		Settings: protocol.ExecuteProcessSettings{ProcessParameters: string(p), VsockStdioRelaySettings: stdio}})}
}

// onPID is a request of typ on the last started process; extra is
// spliced into its JSON body.
func onPID(typ protocol.MessageType, containerID, extra string) request {
	return request{typ, []byte(`{"ContainerId":"` + containerID + `","ProcessId":` + pidToken + extra + `}`)}
}

// sessionSeeds are request sequences that reach past the first request:
// a container's life on a layer of the machine's root file system, an
// exec into a paused container, a process in the VM signalled and waited
// for, pod networking, reference-counted layers.
func sessionSeeds() [][]request {
	vm := protocol.UVMContainerID
	layers := protocol.CombinedLayers{ContainerRootPath: stateToken + "/c/c1/rootfs",
		Layers: []protocol.Layer{{Path: stateToken + "/layers/host"}}, ScratchPath: stateToken + "/scratch"}
	addLayers := request{protocol.ModifySettings, modify(protocol.ResourceCombinedLayers, "Add", layers)}
	removeLayers := request{protocol.ModifySettings, modify(protocol.ResourceCombinedLayers, "Remove", layers)}
	spec := `{"ociVersion":"1.1.0","process":{"args":["/bin/sh","-c","echo hi; sleep 1"],"cwd":"/","env":["PATH=/bin:/usr/bin"]},` +
		`"root":{"path":"` + stateToken + `/c/c1/rootfs"},"mounts":[{"destination":"/proc","type":"proc","source":"proc"}],` +
		`"linux":{"namespaces":[{"type":"mount"},{"type":"pid"},{"type":"ipc"},{"type":"uts"}]}}`
	cfg, _ := json.Marshal(protocol.ContainerConfig{SchemaVersion: protocol.SchemaVersion{Major: 2, Minor: 1},
		OciBundlePath: stateToken + "/c/c1", OciSpecification: json.RawMessage(spec)})
	create := request{protocol.Create, body("c1", protocol.CreateRequest{ContainerConfig: string(cfg)})}
	stdio := protocol.VsockStdioRelaySettings{StdOut: 0x40000001, StdErr: 0x40000002}
	init := execute("c1", protocol.ProcessParameters{CreateStdOutPipe: true, CreateStdErrPipe: true}, stdio)
	oci, _ := json.Marshal(map[string]any{"args": []string{"/bin/true"}, "cwd": "/"})
	exec := execute("c1", protocol.ProcessParameters{OciProcess: oci}, protocol.VsockStdioRelaySettings{})
	ns := protocol.NetworkNamespace{ID: "6c3a3c1a-5b0e-4a8a-9c51-2f8e3d4c5b6a"}
	c1 := []byte(`{"ContainerId":"c1"}`)
	return [][]request{
		{addLayers, create, init, onPID(protocol.WaitForProcess, "c1", `,"TimeoutInMs":10000`),
			{protocol.DeleteContainerState, c1}, removeLayers},
		{addLayers, create, init, {protocol.Pause, c1}, exec, {protocol.Resume, c1},
			{protocol.ShutdownForced, c1}, {protocol.DeleteContainerState, c1}},
		{addLayers, create, init, exec, onPID(protocol.WaitForProcess, "c1", `,"TimeoutInMs":10000`),
			{protocol.GetProperties, []byte(`{"ContainerId":"c1","Query":"{\"PropertyTypes\":[\"ProcessList\",\"Statistics\"]}"}`)}},
		{execute(vm, protocol.ProcessParameters{CommandArgs: []string{"/bin/sleep", "10"}, CreateInUtilityVM: true,
			CreateStdInPipe: true, CreateStdOutPipe: true}, protocol.VsockStdioRelaySettings{StdIn: 0x40000001, StdOut: 0x40000002}),
			onPID(protocol.ResizeConsole, vm, `,"Height":24,"Width":80`),
			onPID(protocol.SignalProcess, vm, `,"Options":{"Signal":15}`),
			onPID(protocol.WaitForProcess, vm, `,"TimeoutInMs":10000`)},
		{execute(vm, protocol.ProcessParameters{CommandLine: "/bin/sh", EmulateConsole: true, CreateInUtilityVM: true,
			CreateStdInPipe: true, CreateStdOutPipe: true}, protocol.VsockStdioRelaySettings{StdIn: 0x40000001, StdOut: 0x40000002}),
			onPID(protocol.ResizeConsole, vm, `,"Height":50,"Width":132`),
			{protocol.ShutdownGraceful, []byte(`{"ContainerId":"` + vm + `"}`)}},
		{{protocol.ModifySettings, modify(protocol.ResourceNetworkNamespace, "Add", ns)},
			{protocol.ModifySettings, modify(protocol.ResourceNetwork, "Add", protocol.NetworkAdapter{NamespaceID: ns.ID, MacAddress: "00-15-5D-01-02-03"})},
			{protocol.ModifySettings, modify(protocol.ResourceNetworkNamespace, "Remove", ns)}},
		{addLayers, addLayers, removeLayers, removeLayers, removeLayers},
	}
}

// FuzzAgentSession is FuzzAgent for sequences of up to maxSessionRequests
// requests on one agent (see decodeSession), each answered before the next
// is sent, with the same checks: it reaches the states a single request
// cannot (a created, running or paused container; a process to signal).
func FuzzAgentSession(f *testing.F) {
	requireConfined(f)
	for _, s := range sessionSeeds() {
		f.Add(encodeSession(s...))
	}
	env := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		env.run(t, decodeSession(data), false)
	})
}
