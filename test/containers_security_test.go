package test

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestContainerSecurityDefaults: what the spec asks for is enforced —
// seccomp, masked and read-only paths, a read-only root, no new
// privileges, and exactly the listed capabilities.
func TestContainerSecurityDefaults(t *testing.T) {
	a := startContainerAgent(t)
	s := a.spec("sh", "-c", strings.Join([]string{
		"mkdir /tmp/x 2>/dev/null && echo mkdir-allowed || echo mkdir-denied",
		"echo timer_list=$(wc -c < /proc/timer_list) firmware=$(ls /sys/firmware | wc -l)",
		"(echo x > /proc/sys/kernel/domainname) 2>/dev/null && echo procsys-writable || echo procsys-readonly",
		"touch /rootfile 2>/dev/null && echo root-writable || echo root-readonly",
		"grep -E '^(NoNewPrivs|CapEff|Seccomp):' /proc/self/status | tr -s '\\t ' ' '",
	}, "; "))
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev"}})
	s.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchAARCH64},
		Syscalls: []specs.LinuxSyscall{{
			Names:    []string{"mkdir", "mkdirat"},
			Action:   specs.ActErrno,
			ErrnoRet: ptr(uint(1)),
		}},
	}
	_, r := a.run(t, s)
	for _, want := range []string{
		"mkdir-denied",
		"timer_list=0 firmware=0",
		"procsys-readonly",
		"root-readonly",
		"NoNewPrivs: 1",
		"CapEff: 0000000020000420", // CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE
		"Seccomp: 2",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q in:\n%s(stderr %q)", want, r.stdout, r.stderr)
		}
	}
}
