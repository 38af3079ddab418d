// Package hcs owns a utility VM run by the Windows Host Compute Service:
// the schema 2.x compute system document that describes it, the
// vmcompute.dll calls that create, start, modify and stop it, the
// notifications that complete those calls, and the mapping of HCS's
// HRESULTs to errors. It implements vm.VM as far as HCS allows.
//
// One VM is one HCS compute system:
//
//	boot        Chipset.LinuxKernelDirect: Config.Kernel, Config.Initrd, command line
//	            "panic=-1 quiet pci=off ... gcs.transport=vsock" + Config.KernelArgs
//	agent       hvsocket: the guest dials vsock ports, the host listens on their
//	            service IDs for the VM's runtime ID (Agent(), transport.HvSock);
//	            there is no serial agent channel
//	disks       Devices.Scsi controllers "0".."3" (scsiKey); hot-added with
//	            modify requests at VirtualMachine/Devices/Scsi/<ctrl>/Attachments/<lun>
//	layers      Devices.VirtualPMem, MaximumCount slots; hot-added at
//	            VirtualMachine/Devices/VirtualPMem/Devices/<n>
//	console     Config.ConsoleLog: ttyS0 on a named pipe the driver serves and copies
//	            there; or Options.ConsolePipe, a pipe the caller serves;
//	            Config.StateDir is not used
//	refused     nothing QEMU-only reaches it: Accel and shares are qemu.Options
//	lifecycle   create → register callback → (SystemCreateCompleted) → read
//	            RuntimeId → start → (SystemStartCompleted); SystemExited closes Done
//
// Every HCS call goes through the api interface (api.go). Its only real
// implementation binds vmcompute.dll (vmcompute_windows.go); everything
// else, the document, the lifecycle and the error mapping, is plain Go that
// builds and is tested on any OS against a fake api.
package hcs
