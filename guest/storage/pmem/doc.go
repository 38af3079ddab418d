// Package pmem owns the guest's virtual persistent-memory layers
// (VPMemDevice): finding /dev/pmem<N>, waiting for it with kernel uevents,
// carving one layer out of a device that holds several with a dm-linear
// slice, checking it with dm-verity, mounting it read-only, and counting
// the requests that hold each mount in the mount table it shares with the
// other storage kinds.
package pmem
