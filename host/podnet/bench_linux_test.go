package podnet_test

import (
	"context"
	"testing"

	"github.com/uvmgcs/gcs/host/podnet"
	"github.com/uvmgcs/gcs/host/podnet/cnitest"
)

// BenchmarkSetupRelease: the tap and redirects that joining a pod network
// costs on the host, per pod.
func BenchmarkSetupRelease(b *testing.B) {
	n := cnitest.NewNetwork(b, cnitest.Options{})
	pod := n.AddPod(b)
	ctx := context.Background()
	for b.Loop() {
		ep, err := podnet.Setup(ctx, pod.NetNS, podnet.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := ep.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCNIAdd is the baseline: CNI ADD of the same network for a new
// pod namespace (bridge, host-local, portmap, loopback), as CRI runs it.
func BenchmarkCNIAdd(b *testing.B) {
	n := cnitest.NewNetwork(b, cnitest.Options{})
	for b.Loop() {
		n.AddPod(b)
	}
}
