// Package dm owns the guest's device-mapper devices: it speaks the kernel's
// ioctl interface on /dev/mapper/control directly (create, load a table,
// resume, remove, list, status), builds the two tables the guest uses
// (dm-linear slices of a shared device and dm-verity over a filesystem with
// its hash tree appended), and creates the /dev/mapper/<name> nodes itself,
// since the utility VM runs no udev. Every device it makes carries its
// Mapper's name prefix, so what is left behind can be listed and removed.
package dm
