// Package network owns the guest's pod network namespaces and the adapters
// the host moves into them.
//
// A namespace is named by the host's NamespaceID (a GUID, compared
// case-insensitively) and lives as a bind mount at Dir/<id>, beside its
// resolv.conf (Dir/<id>.resolv.conf) and hosts file (Dir/<id>.hosts).
// ModifySettings of type Network adds an adapter — the interface whose MAC
// the request names, waited for on netlink link updates — to a namespace,
// creating the namespace when it does not exist yet, and configures its
// MTU, addresses, routes and DNS; Remove returns the interface to the root
// namespace and deletes the namespace once its last adapter is gone and no
// process uses it. hcsshim's NetworkNamespace type (settings {"ID"})
// creates and deletes a namespace explicitly; deleting one that still holds
// adapters fails with errdefs.ErrFailedPrecondition.
//
// Containers join a namespace through NamespacePath (see
// guest/runtime/container's Config.Network) and take its resolv.conf from
// ResolvConf.
package network
