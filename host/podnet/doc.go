// Package podnet connects a utility VM to a pod's network the way kata
// does. CNI (through containerd's CRI plugin) fills a network namespace
// with a veth holding the pod's addresses and routes; Setup adds a tap
// device beside it and has tc ingress qdiscs with mirred redirect filters
// carry every frame from one to the other, and reports the veth's MAC, MTU,
// addresses and routes, which the guest's adapter takes over so that the
// pod's network sees the VM where the veth was. Attach ties that to a
// running VM: a NIC on the tap (qemu.VM.AddTapNIC) and the guest's Network
// request; Release undoes both.
//
// Everything here is Linux only; the package is empty elsewhere.
package podnet
