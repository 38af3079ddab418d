//go:build linux

package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/uvmgcs/gcs/guest/bridge"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/uvmgcs/gcs/guest/agent"
	"github.com/uvmgcs/gcs/guest/network"
	"github.com/uvmgcs/gcs/protocol"
)

// rawRecorder is a Resources that keeps every request as sent.
type rawRecorder struct {
	mu   sync.Mutex
	reqs []protocol.ModificationRequest
}

func (r *rawRecorder) Modify(ctx context.Context, req protocol.ModificationRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	return nil
}

const testNamespace = "0F6E1D2C-3B4A-4958-8776-A5B4C3D2E1F0"

func TestNetworkRequests(t *testing.T) {
	ctx := context.Background()
	rec := &rawRecorder{}
	gc := startResourceGuest(t, rec)
	a := protocol.NetworkAdapter{
		NamespaceID:   testNamespace,
		ID:            "11111111-2222-3333-4444-555555555555",
		MacAddress:    "00-15-5D-01-02-03",
		DNSServerList: "10.0.0.1",
		EncapOverhead: 50,
		IPConfigs:     []protocol.IPConfig{{IPAddress: "10.0.0.2", PrefixLength: 24}},
		Routes:        []protocol.Route{{NextHop: "10.0.0.1", DestinationPrefix: "0.0.0.0/0"}},
	}
	if err := gc.AddNetworkNamespace(ctx, testNamespace); err != nil {
		t.Fatal(err)
	}
	if err := gc.AddNetworkAdapter(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := gc.RemoveNetworkAdapter(ctx, protocol.NetworkAdapter{NamespaceID: testNamespace, ID: a.ID}); err != nil {
		t.Fatal(err)
	}
	if err := gc.RemoveNetworkNamespace(ctx, testNamespace); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rec.reqs {
		got = append(got, fmt.Sprintf("%s %s %s", r.RequestType, r.ResourceType, r.Settings))
	}
	want := []string{
		`Add NetworkNamespace {"ID":"` + testNamespace + `"}`,
		`Add Network {"NamespaceID":"` + testNamespace + `","ID":"11111111-2222-3333-4444-555555555555","MacAddress":"00-15-5D-01-02-03",` +
			`"DNSServerList":"10.0.0.1","EncapOverhead":50,"IPConfigs":[{"IPAddress":"10.0.0.2","PrefixLength":24}],` +
			`"Routes":[{"NextHop":"10.0.0.1","DestinationPrefix":"0.0.0.0/0"}]}`,
		`Remove Network {"NamespaceID":"` + testNamespace + `","ID":"11111111-2222-3333-4444-555555555555"}`,
		`Remove NetworkNamespace {"ID":"` + testNamespace + `"}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("requests\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var back protocol.NetworkAdapter
	if err := json.Unmarshal(rec.reqs[1].Settings, &back); err != nil || !reflect.DeepEqual(back, a) {
		t.Fatalf("settings round trip: %+v %v", back, err)
	}
}

// noLinks is a LinkSource without interfaces or updates.
type noLinks struct{}

func (noLinks) LinkList() ([]netlink.Link, error) { return nil, nil }
func (noLinks) Subscribe(ctx context.Context) (<-chan struct{}, error) {
	return make(chan struct{}), nil
}

// TestNetworkErrorsOverTheBridge drives the guest's network manager with
// requests it must refuse before touching anything, and checks the host
// gets each refusal's HRESULT.
func TestNetworkErrorsOverTheBridge(t *testing.T) {
	ctx := context.Background()
	m, err := network.New(network.Config{Dir: t.TempDir(), Links: noLinks{}, LinkTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(ctx) })
	gc := startResourceGuest(t, agent.Resources(nil, m, nil))
	ok := protocol.NetworkAdapter{NamespaceID: testNamespace, MacAddress: "00-15-5D-01-02-03",
		IPConfigs: []protocol.IPConfig{{IPAddress: "10.0.0.2", PrefixLength: 24}}}
	domains := make([]string, 300)
	for i := range domains {
		domains[i] = fmt.Sprintf("d%d.example", i)
	}
	for _, tc := range []struct {
		name string
		edit func(a *protocol.NetworkAdapter)
		want protocol.HResult
	}{
		{"unknown MAC", func(a *protocol.NetworkAdapter) {}, protocol.HrVmcomputeTimeout},
		{"bad CIDR", func(a *protocol.NetworkAdapter) {
			a.Routes = []protocol.Route{{NextHop: "10.0.0.1", DestinationPrefix: "10.1.0.0/33"}}
		}, protocol.HrInvalidArg},
		{"bad prefix length", func(a *protocol.NetworkAdapter) { a.IPConfigs[0].PrefixLength = 40 }, protocol.HrInvalidArg},
		{"300 search domains", func(a *protocol.NetworkAdapter) { a.DNSSuffix = strings.Join(domains, ",") }, protocol.HrInvalidArg},
		{"namespace id", func(a *protocol.NetworkAdapter) { a.NamespaceID = "../x" }, protocol.HrInvalidArg},
	} {
		a := ok
		a.IPConfigs = append([]protocol.IPConfig(nil), ok.IPConfigs...)
		tc.edit(&a)
		err := gc.AddNetworkAdapter(ctx, a)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Removing what is not there is success.
	if err := gc.RemoveNetworkAdapter(ctx, ok); err != nil {
		t.Errorf("remove unknown adapter: %v", err)
	}
	if err := gc.RemoveNetworkNamespace(ctx, testNamespace); err != nil {
		t.Errorf("remove unknown namespace: %v", err)
	}
}

// startResourceGuest runs the guest bridge with res serving the utility
// VM's ModifySettings, and returns the host's connection to it.
func startResourceGuest(t *testing.T, res bridge.Resources) *GuestConnection {
	t.Helper()
	return startGuestWith(t, res).gc
}
