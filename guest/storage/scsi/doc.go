// Package scsi owns the guest's SCSI disks: finding the block device the
// host attached at a (controller, LUN, partition) through sysfs, waiting for
// it with kernel uevents, mounting or linking it, and deleting the device
// when the host is about to unplug it. Each step is its own function, so the
// mounting half works on any block device (a loop device in tests).
package scsi
