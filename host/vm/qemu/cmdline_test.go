//go:build linux

package qemu

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/uvmgcs/gcs/host/vm"
)

func TestArgs(t *testing.T) {
	p := paths{qmpSocket: "/s/qmp.sock", agentSock: "/s/gcs.sock"}
	base := vm.Config{Kernel: "/k", Initrd: "/i"}.WithDefaults()
	for _, tc := range []struct {
		name      string
		l         launch
		want      [][]string // each a run of consecutive arguments
		wantNot   []string
		appendArg string
	}{
		{
			name: "defaults",
			l:    launch{cfg: base, accel: AccelTCG, paths: p},
			want: [][]string{
				{"-accel", "tcg,tb-size=64", "-object", "memory-backend-memfd,id=ram0,size=512M"},
				{"-M", "pc,memory-backend=ram0"}, {"-m", "512,slots=4,maxmem=4096M"}, {"-smp", "1"},
				{"-nographic", "-no-reboot", "-nodefaults", "-net", "none"},
				{"-kernel", "/k", "-initrd", "/i"},
				{"-serial", "chardev:console0"},
				{"-qmp", "unix:/s/qmp.sock,server=on,wait=off"},
				{"-device", "virtio-scsi-pci,id=scsi0"},
				{"-device", "virtio-balloon-pci,free-page-reporting=on"},
				{"-device", "virtio-serial-pci,max_ports=2"},
				{"-chardev", "socket,path=/s/gcs.sock,server=on,wait=off,id=gcs0"},
				{"-device", "virtserialport,chardev=gcs0,name=gcs"},
			},
			wantNot:   []string{"-cpu", "vhost-vsock-pci", "microvm", "pci=off"},
			appendArg: baseKernelArgs,
		},
		{
			name: "microvm, tcg, vsock, a share",
			l: launch{
				cfg:   vm.Config{Kernel: "/k", Initrd: "/i", MemoryMiB: 256, CPUs: 1},
				opts:  Options{Machine: MachineMicroVM, Shares: []Share{{Tag: "t", Path: "/d"}}},
				accel: AccelTCG, vsockCID: 9, tscKHz: 2200000, paths: p,
			},
			want: [][]string{
				{"-accel", "tcg,tb-size=64", "-object", "memory-backend-memfd,id=ram0,size=256M"},
				{"-M", "microvm,x-option-roms=off,memory-backend=ram0", "-m", "256"},
				{"-device", "virtio-scsi-device,id=scsi0"},
				{"-device", "virtio-rng-device,rng=rng0"},
				{"-device", "virtio-balloon-device,free-page-reporting=on"},
				{"-device", "virtio-serial-device,max_ports=2"},
				{"-device", "vhost-vsock-device,guest-cid=9"},
				{"-device", "virtio-9p-device,fsdev=fs0,mount_tag=t"},
			},
			wantNot:   []string{"-pci", "slots="},
			appendArg: baseKernelArgs + " pci=off tsc_early_khz=2200000",
		},
		{
			name:      "pc, tcg: the TSC's frequency is given too",
			l:         launch{cfg: base, accel: AccelTCG, tscKHz: 2200000, paths: p},
			want:      [][]string{{"-M", "pc,memory-backend=ram0"}},
			appendArg: baseKernelArgs + " tsc_early_khz=2200000",
		},
		{
			name: "kvm, vsock, big, extra args",
			l: launch{
				cfg:      vm.Config{Kernel: "/k", Initrd: "/i", MemoryMiB: 8192, CPUs: 2, KernelArgs: " init=/gcs "},
				accel:    AccelKVM,
				tscKHz:   2200000, // KVM's guest calibrates for itself
				vsockCID: 7,
				paths:    p,
			},
			want: [][]string{
				{"-accel", "kvm"}, {"-cpu", "host"}, {"-m", "8192,slots=4,maxmem=12288M"}, {"-smp", "2"},
				{"-device", "vhost-vsock-pci,guest-cid=7"},
			},
			appendArg: baseKernelArgs + " init=/gcs",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.l.args()
			for _, run := range tc.want {
				if !containsRun(args, run) {
					t.Errorf("args lack %q:\n%q", run, args)
				}
			}
			for _, a := range tc.wantNot {
				for _, got := range args {
					if strings.Contains(got, a) {
						t.Errorf("args have %q:\n%q", a, args)
					}
				}
			}
			if i := slices.Index(args, "-append"); i < 0 || args[i+1] != tc.appendArg {
				t.Errorf("kernel command line in %q, want %q", args, tc.appendArg)
			}
		})
	}
}

func TestHostTSCKHz(t *testing.T) {
	for in, want := range map[string]int{
		"processor\t: 0\ncpu MHz\t\t: 2199.998\ncache size\t: 1 KB\n": 2199998,
		"processor\t: 0\n":       0,
		"cpu MHz\t\t: unknown\n": 0,
	} {
		if got := hostTSCKHz(in); got != want {
			t.Errorf("hostTSCKHz(%q) = %d, want %d", in, got, want)
		}
	}
	b, _ := os.ReadFile("/proc/cpuinfo")
	t.Logf("this host: %d kHz", hostTSCKHz(string(b)))
}

func containsRun(args, run []string) bool {
	for i := 0; i+len(run) <= len(args); i++ {
		if slices.Equal(args[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

func TestChooseAccel(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "kvm")
	must(t, os.WriteFile(regular, nil, 0o600))
	for _, tc := range []struct {
		name   string
		forced string
		h      hostPaths
		want   string
	}{
		{"forced tcg", AccelTCG, hostPaths{kvmDev: "/dev/kvm"}, AccelTCG},
		{"forced kvm", AccelKVM, hostPaths{kvmDev: filepath.Join(dir, "none")}, AccelKVM},
		{"no /dev/kvm", "", hostPaths{kvmDev: filepath.Join(dir, "none")}, AccelTCG},
		{"not a kvm device", "", hostPaths{kvmDev: regular}, AccelTCG},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := chooseAccel(tc.forced, tc.h)
			if got != tc.want {
				t.Errorf("chooseAccel = %s (%s), want %s", got, reason, tc.want)
			}
		})
	}

	// On a host whose KVM is the nested PVM flavour (this project's
	// machines), the probe must not pick KVM: a stock kernel hangs there.
	h := defaultHostPaths()
	if _, err := os.Stat(filepath.Join(h.sysModule, "kvm_pvm")); err == nil {
		if got, reason := chooseAccel("", h); got != AccelTCG {
			t.Errorf("kvm_pvm host: chooseAccel = %s (%s)", got, reason)
		}
	}
	got, reason := chooseAccel("", h)
	t.Logf("this host: %s (%s)", got, reason)
}

func TestMakePaths(t *testing.T) {
	short := filepath.Join(t.TempDir(), "state")
	p, err := makePaths(short)
	must(t, err)
	if p.socketDir != p.stateDir || p.qmpSocket != filepath.Join(short, "qmp.sock") {
		t.Errorf("short state dir: %+v", p)
	}
	must(t, p.remove())
	if _, err := os.Stat(short); !os.IsNotExist(err) {
		t.Errorf("state dir still there: %v", err)
	}

	long := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	p, err = makePaths(long)
	must(t, err)
	if p.socketDir == p.stateDir || len(p.qmpSocket) > maxSocketPath || len(p.agentSock) > maxSocketPath {
		t.Errorf("long state dir: sockets at %s and %s", p.qmpSocket, p.agentSock)
	}
	if p.consoleLog != filepath.Join(long, "console.log") {
		t.Errorf("console log at %s", p.consoleLog)
	}
	must(t, p.remove())
	for _, d := range []string{p.stateDir, p.socketDir} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", d, err)
		}
	}

	p, err = makePaths("")
	must(t, err)
	if !strings.HasPrefix(p.stateDir, os.TempDir()) {
		t.Errorf("default state dir %s", p.stateDir)
	}
	must(t, p.remove())
}

func TestReleasableMappings(t *testing.T) {
	maps := `55d0c8a00000-55d0c8a4f000 r--p 00000000 fe:00 10166292                   /usr/bin/qemu-system-x86_64
55d0c8a4f000-55d0c8f00000 r-xp 0004f000 fe:00 10166292                   /usr/bin/qemu-system-x86_64
55d0c8f00000-55d0c9000000 rw-p 00500000 fe:00 10166292                   /usr/bin/qemu-system-x86_64
7f65f3a00000-7f65f3edb000 r--p 00000000 fe:00 6466124                    /out/initrd.img
7f65f4000000-7f65f7fff000 rwxp 00000000 00:00 0 
7f65f8000000-7f65f9000000 rw-s 00000000 00:01 2048                       /memfd:memory-backend-memfd (deleted)
7f65fc400000-7f65fdd54000 rw-p 00000000 fe:00 6466123                    /out/a dir/vmlinux
7f65fde29000-7f65fe12c000 rw-p 00000000 00:00 0                          [heap]
7f65fe200000-7f65fe300000 r--p 00000000 00:00 0 
7ffd5a3f0000-7ffd5a3f2000 r--p 00000000 00:00 0                          [vvar]
`
	got, err := releasableMappings(strings.NewReader(maps), []string{"/out/a dir/vmlinux", "/out/initrd.img"})
	want := []addrRange{{0x55d0c8a00000, 0x55d0c8a4f000}, {0x7f65f3a00000, 0x7f65f3edb000}, {0x7f65fc400000, 0x7f65fdd54000}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("releasableMappings = %x, %v; want %x", got, err, want)
	}
	if _, err := releasableMappings(strings.NewReader("zz-1 r--p 0 0:0 1 /out/initrd.img\n"), []string{"/out/initrd.img"}); err == nil {
		t.Error("a bad range: no error")
	}
}
