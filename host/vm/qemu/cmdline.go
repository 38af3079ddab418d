//go:build linux

package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host/vm"
)

// baseKernelArgs is the tuned command line every VM boots with; measured to
// save about 0.4 s of a TCG boot (docs/vm-on-this-machine.md). The agent
// is told to use the serial channel, which Agent() listens on, even where
// the VM also has a vsock device: a guest's vsock connections reach any
// host listener on the port, so two VMs (two shims) would fight over the
// bridge port, where a channel per VM cannot mix them up.
//
// scsi_mod.scan=manual: the kernel does not scan the virtio-scsi
// controller's 256 targets at boot (an INQUIRY each, 150-350 ms under
// TCG), where no disk is attached anyway. Disks come by hot-plug: virtio-scsi
// adds a LUN above 0 itself, and the agent asks for a scan of exactly the
// LUN it waits for (guest/storage/scsi), which also covers LUN 0 and an
// event the controller dropped. dummy.numdummies=0: no dummy0 device.
//
// dhash_entries, ihash_entries: the dentry and inode cache hash tables
// get 8,192 buckets (64 KiB each) instead of one per 8 or 16 KiB of RAM
// (512 KiB and 256 KiB for 512 MiB), plenty for a VM that holds a pod's
// files; measured: 0.5-0.7 MiB less of the guest's memory resident on the
// host.
const baseKernelArgs = "console=ttyS0 panic=-1 quiet cryptomgr.notests mitigations=off no_timer_check " +
	"tsc=reliable audit=0 apparmor=0 random.trust_cpu=on scsi_mod.scan=manual dummy.numdummies=0 " +
	"dhash_entries=8192 ihash_entries=8192 gcs.transport=serial:" + agentPortName

// microVMKernelArgs are added on microvm, which has no PCI bus: the kernel
// does not look for one.
const microVMKernelArgs = "pci=off"

// tcgCacheMiB bounds TCG's translation cache (QEMU's default is up to
// 1 GiB, which a long-running VM fills and keeps resident). Every MiB the
// guest's code has filled stays resident, but a cache smaller than the code
// a boot and a first container run translate (about 40 MiB) is flushed and
// refilled: measured here, 32 MiB made a container's start 0.3-0.6 s slower
// and 16 MiB 0.7-1.3 s, for 8 and 24 MiB less resident memory. A boot of
// the UVM kernel fills 42-46 MiB and its first container brings it to
// 63 MiB (QEMU's `info jit`), so 64 MiB is the smallest cache that
// neither flushes: measured on microvm (interleaved, shared machine),
// 40 MiB cost `host-bridge run -- true` 0.4-0.8 s and 32 MiB 0.5-1.4 s,
// while launch to negotiated moved by less than the noise.
const tcgCacheMiB = 64

// ramBackend is the guest RAM's memory backend: a memfd (shmem) rather than
// QEMU's default anonymous RAM, which QEMU asks to be backed by transparent
// huge pages, so that a guest page touched costs 4 KiB of host memory, not
// 2 MiB. Pages the guest frees (free page reporting) are punched out of it.
const ramBackend = "ram0"

// Memory hot-plug space for virtio-pmem devices.
const (
	memorySlots  = 4
	maxMemoryMiB = 4096
)

// Names the command line gives devices, used again by hot-plug.
const (
	scsiController = "scsi0"
	agentChardev   = "gcs0"
	agentPortName  = "gcs"
	consoleChardev = "console0"
)

// hostPaths are the host files the driver probes; a test points them at a
// fake tree.
type hostPaths struct {
	kvmDev        string // /dev/kvm
	sysModule     string // /sys/module
	vhostVsockDev string // /dev/vhost-vsock
	cpuinfo       string // /proc/cpuinfo
}

func defaultHostPaths() hostPaths {
	return hostPaths{
		kvmDev:        "/dev/kvm",
		sysModule:     "/sys/module",
		vhostVsockDev: "/dev/vhost-vsock",
		cpuinfo:       "/proc/cpuinfo",
	}
}

// The KVM API version probe: KVM_GET_API_VERSION is _IO(KVMIO=0xAE, 0x00),
// and 12 is the only version stable KVM has ever answered.
const (
	kvmGetAPIVersion = 0xAE00
	kvmAPIVersion    = 12
)

// chooseAccel returns the accelerator to use and why. A forced choice is
// taken as is. Otherwise KVM is used when /dev/kvm opens, answers
// KVM_GET_API_VERSION with 12, and is not the nested "PVM" flavour
// (/sys/module/kvm_pvm), which boots only specially built guest kernels and
// hangs a stock one; TCG in every other case. The probe never starts a
// trial VM: that would cost seconds on every Start.
func chooseAccel(forced string, h hostPaths) (accel, reason string) {
	if forced != AccelAuto {
		return forced, "forced by options"
	}
	f, err := os.OpenFile(h.kvmDev, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return AccelTCG, fmt.Sprintf("cannot open %s: %v", h.kvmDev, err)
	}
	defer f.Close()
	v, err := unix.IoctlRetInt(int(f.Fd()), kvmGetAPIVersion)
	if err != nil {
		return AccelTCG, fmt.Sprintf("KVM_GET_API_VERSION on %s: %v", h.kvmDev, err)
	}
	if v != kvmAPIVersion {
		return AccelTCG, fmt.Sprintf("KVM API version %d, want %d", v, kvmAPIVersion)
	}
	if _, err := os.Stat(filepath.Join(h.sysModule, "kvm_pvm")); err == nil {
		return AccelTCG, "host KVM is the nested PVM flavour (kvm_pvm loaded), which a stock kernel cannot boot on"
	}
	return AccelKVM, "/dev/kvm works"
}

// hasVhostVsock reports whether the host can give the guest a vsock device.
func hasVhostVsock(h hostPaths) bool {
	_, err := os.Stat(h.vhostVsockDev)
	return err == nil
}

// paths are where one VM's files live. Sockets sit in the state directory
// unless its path is too long for a unix socket address.
type paths struct {
	stateDir   string
	socketDir  string // stateDir, or a short temporary directory
	consoleLog string
	qmpSocket  string
	attachQMP  string // a second monitor, for a process that attaches later (Attach)
	attachInfo string // how Attach finds QEMU: its pid and attachQMP
	agentSock  string
}

// maxSocketPath is the longest unix socket path: sun_path is 108 bytes
// including the terminating NUL.
const maxSocketPath = 107

// makePaths creates the state directory (a temporary one when stateDir is
// empty) and, when needed, a short socket directory.
func makePaths(stateDir string) (p paths, err error) {
	if stateDir == "" {
		if stateDir, err = os.MkdirTemp("", "uvm-state-"); err != nil {
			return paths{}, fmt.Errorf("create state dir: %w", err)
		}
	} else if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return paths{}, fmt.Errorf("create state dir: %w", err)
	}
	if stateDir, err = filepath.Abs(stateDir); err != nil {
		return paths{}, fmt.Errorf("state dir: %w", err)
	}
	p = paths{stateDir: stateDir, socketDir: stateDir, consoleLog: filepath.Join(stateDir, "console.log")}
	if len(filepath.Join(stateDir, "qmp.sock")) > maxSocketPath {
		if p.socketDir, err = os.MkdirTemp("", "vm"); err != nil {
			os.RemoveAll(stateDir)
			return paths{}, fmt.Errorf("create socket dir: %w", err)
		}
	}
	p.qmpSocket = filepath.Join(p.socketDir, "qmp.sock")
	p.attachQMP = filepath.Join(p.socketDir, "qmp-attach.sock")
	p.attachInfo = filepath.Join(stateDir, attachInfoFile)
	p.agentSock = filepath.Join(p.socketDir, "gcs.sock")
	return p, nil
}

// remove deletes the state directory and the socket directory.
func (p paths) remove() error {
	var errs []error
	if p.socketDir != "" && p.socketDir != p.stateDir {
		errs = append(errs, os.RemoveAll(p.socketDir))
	}
	if p.stateDir != "" {
		errs = append(errs, os.RemoveAll(p.stateDir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove vm state: %w", err)
	}
	return nil
}

// launch is what the command line is built from.
type launch struct {
	cfg      vm.Config // with defaults applied
	opts     Options
	accel    string
	vsockCID uint32 // 0: no vsock device
	tscKHz   int    // the host's TSC frequency, 0 if unknown
	paths    paths
}

// args returns QEMU's arguments, without the binary.
//
// The pc machine has PCI hot-plug (NICs) and memory slots (virtio-pmem);
// microvm has neither, boots fastest (no firmware tables to walk, no PCI
// bus), and puts every device on virtio-mmio. Under TCG the kernel is told
// the TSC's frequency (tsc_early_khz): calibrating it against the emulated
// PIT costs boot time on pc and hung some microvm boots.
func (l launch) args() []string {
	cfg := l.cfg
	micro := l.opts.Machine == MachineMicroVM
	// A virtio device's name on this machine's transport.
	virtio := func(kind string) string {
		if micro {
			return kind + "-device"
		}
		return kind + "-pci"
	}
	cmdline := baseKernelArgs
	if micro {
		cmdline += " " + microVMKernelArgs
	}
	if l.accel == AccelTCG && l.tscKHz > 0 {
		cmdline += fmt.Sprintf(" tsc_early_khz=%d", l.tscKHz)
	}
	if s := strings.TrimSpace(cfg.KernelArgs); s != "" {
		cmdline += " " + s
	}
	accel := l.accel
	if accel == AccelTCG {
		accel += fmt.Sprintf(",tb-size=%d", tcgCacheMiB)
	}
	a := []string{"-accel", accel,
		"-object", fmt.Sprintf("memory-backend-memfd,id=%s,size=%dM", ramBackend, cfg.MemoryMiB)}
	if micro {
		// No option ROMs to run; the RTC stays: it is the guest's wall clock.
		a = append(a, "-M", "microvm,x-option-roms=off,memory-backend="+ramBackend, "-m", strconv.Itoa(cfg.MemoryMiB))
	} else {
		maxMiB := maxMemoryMiB
		if cfg.MemoryMiB >= maxMiB {
			maxMiB = cfg.MemoryMiB + maxMemoryMiB
		}
		a = append(a, "-M", "pc,memory-backend="+ramBackend, "-m", fmt.Sprintf("%d,slots=%d,maxmem=%dM", cfg.MemoryMiB, memorySlots, maxMiB))
	}
	if l.accel == AccelKVM {
		a = append(a, "-cpu", "host")
	}
	a = append(a,
		"-smp", strconv.Itoa(cfg.CPUs),
		"-nographic", "-no-reboot", "-nodefaults", "-net", "none",
		"-kernel", cfg.Kernel,
		"-initrd", cfg.Initrd,
		"-append", cmdline,
		"-chardev", "stdio,id="+consoleChardev+",signal=off",
		"-serial", "chardev:"+consoleChardev,
		"-qmp", "unix:"+l.paths.qmpSocket+",server=on,wait=off",
		"-qmp", "unix:"+l.paths.attachQMP+",server=on,wait=off",
		"-device", virtio("virtio-scsi")+",id="+scsiController,
		// The host's entropy seeds the guest's RNG at boot.
		"-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", virtio("virtio-rng")+",rng=rng0",
		// Pages the guest frees go back to the host (free page reporting).
		"-device", virtio("virtio-balloon")+",free-page-reporting=on",
		// One port: port 0 is reserved for a console, the agent's is 1.
		// QEMU's default of 31 ports has the guest set up 64 queues
		// (measured on microvm: about 4 MiB of guest and 2 MiB of QEMU
		// memory more than 2 ports).
		"-device", virtio("virtio-serial")+",max_ports=2",
		"-chardev", "socket,path="+l.paths.agentSock+",server=on,wait=off,id="+agentChardev,
		"-device", "virtserialport,chardev="+agentChardev+",name="+agentPortName,
	)
	if l.vsockCID != 0 {
		a = append(a, "-device", fmt.Sprintf("%s,guest-cid=%d", virtio("vhost-vsock"), l.vsockCID))
	}
	for i, sh := range l.opts.Shares {
		fsdev := fmt.Sprintf("local,id=fs%d,path=%s,security_model=none", i, qemuOpt(sh.Path))
		if sh.ReadOnly {
			fsdev += ",readonly=on"
		}
		a = append(a, "-fsdev", fsdev, "-device", fmt.Sprintf("%s,fsdev=fs%d,mount_tag=%s", virtio("virtio-9p"), i, qemuOpt(sh.Tag)))
	}
	return a
}

// hostTSCKHz is the host CPU's clock in kHz as /proc/cpuinfo reports it
// (TCG's guest TSC runs at the host's), or 0 when it says nothing usable.
func hostTSCKHz(cpuinfo string) int {
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz <= 0 {
			return 0
		}
		return int(mhz * 1000)
	}
	return 0
}

// Accelerator choices for Options.Accel.
const (
	AccelAuto = ""    // probe the host (chooseAccel)
	AccelTCG  = "tcg" // QEMU's emulator: slow, works everywhere
	AccelKVM  = "kvm" // hardware virtualization
)

// Machine choices for Options.Machine.
const (
	MachineDefault = ""        // pc
	MachinePC      = "pc"      // PCI hot-plug (NICs), memory slots (virtio-pmem)
	MachineMicroVM = "microvm" // boots fastest; no pmem, no NIC hot-plug
)

// Options are what only the QEMU driver knows.
type Options struct {
	Accel   string  // AccelAuto, AccelTCG or AccelKVM
	Machine string  // MachineDefault, MachinePC or MachineMicroVM
	Shares  []Share // host directories offered as virtio-9p mounts at boot
}

// Share is a host directory offered to the guest under a virtio-9p mount
// tag; the guest mounts it with a MappedDirectory whose ShareName is Tag.
type Share struct {
	Tag      string
	Path     string
	ReadOnly bool
}

// validate reports the first thing wrong with o.
func (o Options) validate() error {
	for _, sh := range o.Shares {
		if sh.Tag == "" || len(sh.Tag) > 255 {
			return fmt.Errorf("qemu options: share %s: a tag of 1-255 bytes is required", sh.Path)
		}
		if st, err := os.Stat(sh.Path); err != nil || !st.IsDir() {
			return fmt.Errorf("qemu options: share %q: %s is not a directory", sh.Tag, sh.Path)
		}
	}
	switch o.Accel {
	case AccelAuto, AccelTCG, AccelKVM:
	default:
		return fmt.Errorf("qemu options: Accel %q is not %q, %q or empty", o.Accel, AccelTCG, AccelKVM)
	}
	switch o.Machine {
	case MachineDefault, MachinePC, MachineMicroVM:
	default:
		return fmt.Errorf("qemu options: Machine %q is not %q, %q or empty", o.Machine, MachinePC, MachineMicroVM)
	}
	return nil
}

// qemuOpt escapes a value for a QEMU option list: commas are doubled.
func qemuOpt(v string) string { return strings.ReplaceAll(v, ",", ",,") }
