package agent

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/guest/bridge"
	"github.com/uvmgcs/gcs/guest/kmod"
	"github.com/uvmgcs/gcs/guest/network"
	"github.com/uvmgcs/gcs/guest/storage"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
)

// Resources routes ModifySettings on the utility VM: disks, layers and
// shares to st, adapters and namespaces to nw (a nil one's types are not
// implemented), each behind the loading of the kernel modules it needs
// from k (nil: none are loaded). The VM boots with only what talking to
// the host and an ext4 container need, and pays for the rest the first
// time it is used.
func Resources(st *storage.Manager, nw *network.Manager, k *kmod.Loader) *bridge.ResourceMux {
	m := bridge.NewResourceMux()
	if st != nil {
		routeStorage(m, st, k)
	}
	if nw != nil {
		routeNetwork(m, nw, k)
	}
	return m
}

func routeStorage(m *bridge.ResourceMux, st *storage.Manager, k *kmod.Loader) {
	bridge.Route[protocol.MappedVirtualDisk](m, protocol.ResourceMappedVirtualDisk,
		bridge.Ops[protocol.MappedVirtualDisk]{Add: st.AddDisk, Remove: st.RemoveDisk},
		loadModulesIf(k, func(r *bridge.ResourceRequest) bool {
			return r.Settings.(*protocol.MappedVirtualDisk).VerityInfo != nil
		}, "dm_mod", "dm_verity"),
		loadOnENODEV(k, "erofs"))
	bridge.Route[protocol.SCSIDevice](m, protocol.ResourceSCSIDevice,
		bridge.Ops[protocol.SCSIDevice]{Remove: st.RemoveSCSIDevice})
	bridge.Route[protocol.VPMemDevice](m, protocol.ResourceVPMemDevice,
		bridge.Ops[protocol.VPMemDevice]{Add: st.AddVPMem, Remove: st.RemoveVPMem},
		loadModules(k, "nfit", "nd_pmem", "virtio_pmem", "dm_mod", "dm_verity", "erofs"))
	bridge.Route[protocol.CombinedLayers](m, protocol.ResourceCombinedLayers,
		bridge.Ops[protocol.CombinedLayers]{Add: st.AddLayers, Remove: st.RemoveLayers})
	bridge.Route[protocol.MappedDirectory](m, protocol.ResourceMappedDirectory,
		bridge.Ops[protocol.MappedDirectory]{Add: st.AddShare, Remove: st.RemoveShare},
		loadModulesIf(k, overPort, "9pnet_fd", "9p"),
		loadModulesIf(k, func(r *bridge.ResourceRequest) bool { return !overPort(r) }, "9pnet_virtio", "9p", "virtiofs"))
}

func routeNetwork(m *bridge.ResourceMux, nw *network.Manager, k *kmod.Loader) {
	bridge.Route[protocol.NetworkAdapter](m, protocol.ResourceNetwork,
		bridge.Ops[protocol.NetworkAdapter]{Add: nw.AddAdapter, Remove: nw.RemoveAdapter},
		loadModules(k, "virtio_net"))
	bridge.Route[protocol.NetworkNamespace](m, protocol.ResourceNetworkNamespace,
		bridge.Ops[protocol.NetworkNamespace]{
			Add:    func(ctx context.Context, ns *protocol.NetworkNamespace) error { return nw.AddNamespace(ctx, ns.ID) },
			Remove: func(ctx context.Context, ns *protocol.NetworkNamespace) error { return nw.RemoveNamespace(ctx, ns.ID) },
		})
}

// overPort reports whether a MappedDirectory is 9p over a dialed port
// rather than a virtio-9p tag.
func overPort(r *bridge.ResourceRequest) bool {
	return r.Settings.(*protocol.MappedDirectory).Port != 0
}

// loadModules loads mods before an Add or Update of the wrapped type.
func loadModules(k *kmod.Loader, mods ...string) bridge.ResourceMiddleware {
	return loadModulesIf(k, nil, mods...)
}

// loadModulesIf loads mods before an Add or Update for which need (nil:
// always) holds.
func loadModulesIf(k *kmod.Loader, need func(*bridge.ResourceRequest) bool, mods ...string) bridge.ResourceMiddleware {
	return func(next bridge.ResourceHandler) bridge.ResourceHandler {
		if k == nil {
			return next
		}
		return bridge.ResourceHandlerFunc(func(ctx context.Context, r *bridge.ResourceRequest) error {
			if r.RequestType != protocol.RequestTypeRemove && (need == nil || need(r)) {
				load(ctx, k, mods)
			}
			return next.ServeResource(ctx, r)
		})
	}
}

// loadOnENODEV retries an Add once after loading mods when the kernel did
// not know the file system (an erofs layer). A failed Add left nothing
// behind.
func loadOnENODEV(k *kmod.Loader, mods ...string) bridge.ResourceMiddleware {
	return func(next bridge.ResourceHandler) bridge.ResourceHandler {
		if k == nil {
			return next
		}
		return bridge.ResourceHandlerFunc(func(ctx context.Context, r *bridge.ResourceRequest) error {
			err := next.ServeResource(ctx, r)
			if r.RequestType == protocol.RequestTypeAdd && errors.Is(err, unix.ENODEV) {
				load(ctx, k, mods)
				err = next.ServeResource(ctx, r)
			}
			return err
		})
	}
}

func load(ctx context.Context, k *kmod.Loader, mods []string) {
	if err := k.Load(mods...); err != nil {
		// The owner's own error will say what is missing.
		log.G(ctx).WithError(err).Warn("loading kernel modules")
	}
}
