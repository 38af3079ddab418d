//go:build linux

// Package qemu owns a utility VM run by qemu-system-x86_64: the command
// line, the process and its reaping, the QMP connection, the serial console
// capture, the agent's virtio-serial channel, and hot-plug of SCSI disks and
// virtio-pmem devices through QMP. It implements vm.VM.
//
// One VM is one QEMU process on the "pc" machine (or, with
// vm.Config.Machine "microvm", on microvm: the same devices as
// virtio-*-device on virtio-mmio, no pmem, no NIC hot-plug):
//
//	serial console  -chardev stdio → console.go → <StateDir>/console.log, Config.ConsoleLog, debug log
//	control         -qmp unix:<sockets>/qmp.sock → host/qmp client
//	agent channel   virtserialport name=gcs ↔ -chardev socket <sockets>/gcs.sock → yamux → Agent()
//	attach          -qmp unix:<sockets>/qmp-attach.sock, <StateDir>/qemu.pid → Attach (attach.go)
//	disks           virtio-scsi-pci id=scsi0; scsi-hd per LUN, hot-plugged (hotplug.go)
//	layers          virtio-pmem-pci backed by memory-backend-file, hot-plugged (hotplug.go)
//	memory          guest RAM on a memfd (4 KiB pages); virtio-balloon-pci with free page
//	                reporting: freed guest pages go back to the host
//	boot files      QEMU's mappings of kernel and initrd paged out once the agent is up (release.go)
//	vsock           vhost-vsock-pci, only where /dev/vhost-vsock exists
//
// The accelerator is KVM only where it really works (see chooseAccel) and
// TCG otherwise, with a bounded translation cache.
package qemu
