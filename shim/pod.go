package shim

import (
	"context"
	"fmt"
	"path"
	"runtime"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The annotations containerd's CRI plugin puts on a pod's tasks.
const (
	annotationContainerType   = "io.kubernetes.cri.container-type"
	annotationSandboxID       = "io.kubernetes.cri.sandbox-id"
	annotationSandboxMemory   = "io.kubernetes.cri.sandbox-memory"
	annotationSandboxCPUQuota = "io.kubernetes.cri.sandbox-cpu-quota"
	annotationSandboxCPUPer   = "io.kubernetes.cri.sandbox-cpu-period"
	containerTypeSandbox      = "sandbox"
	containerTypeContainer    = "container"
)

// podRole is what a task is to its pod.
type podRole int

const (
	notPod      podRole = iota // a task of its own (ctr, a runc group)
	podSandbox                 // the pod's sandbox (pause) container
	podWorkload                // a container of the pod
)

// podTask is a task's place in a CRI pod, and what its guest spec needs
// from the pod.
type podTask struct {
	role      podRole
	sandboxID string
	// netNS (sandbox) is the guest network namespace (a GUID) the
	// sandbox joins: the pod's network, attached to the VM; "" when the
	// pod has none attached.
	netNS string
	// sandboxPid (workload) is the guest pid of the sandbox's init: the
	// pid namespace a shareProcessNamespace pod joins. 0 when it is not
	// running.
	sandboxPid int
}

// podOf reads a task's pod annotations.
func podOf(s *specs.Spec) podTask {
	switch s.Annotations[annotationContainerType] {
	case containerTypeSandbox:
		return podTask{role: podSandbox, sandboxID: s.Annotations[annotationSandboxID]}
	case containerTypeContainer:
		if id := s.Annotations[annotationSandboxID]; id != "" {
			return podTask{role: podWorkload, sandboxID: id}
		}
	}
	return podTask{}
}

// validate refuses pod annotations that name no sandbox, or, on a
// sandbox, another one than the task.
func (p podTask) validate(taskID string) error {
	if p.role == notPod {
		return nil
	}
	if len(p.sandboxID) > maxIDLength || !validID.MatchString(p.sandboxID) {
		return fmt.Errorf("annotation %s %q: %w", annotationSandboxID, p.sandboxID, errdefs.ErrInvalidArgument)
	}
	if p.role == podSandbox && p.sandboxID != taskID {
		return fmt.Errorf("sandbox %q names sandbox %q in %s: %w", taskID, p.sandboxID, annotationSandboxID, errdefs.ErrInvalidArgument)
	}
	return nil
}

// podOf is task id's place in its pod, with the pod's guest namespaces
// it needs, and the host network namespace a sandbox attaches.
func (s *Service) podOf(id string, spec *specs.Spec) (pod podTask, nsPath string, err error) {
	pod = podOf(spec)
	if err := pod.validate(id); err != nil {
		return pod, "", err
	}
	switch pod.role {
	case podSandbox:
		if nsPath = netnsPath(spec); nsPath != "" {
			pod.netNS = podNetworkID(id)
		}
	case podWorkload:
		pod.sandboxPid = s.sandboxPid(pod.sandboxID)
	}
	return pod, nsPath, nil
}

// holdPod takes what pod sandbox id holds in the VM: the pod network CNI
// set up in nsPath (attached before the sandbox joins it in the guest)
// and the pod's /dev/shm. On error nothing is held.
func holdPod(ctx context.Context, sb sandbox, spec *specs.Spec, id string, pod podTask, nsPath string) (held []podResource, err error) {
	defer func() {
		if err != nil {
			releaseAll(context.WithoutCancel(ctx), held)
			held = nil
		}
	}()
	if pod.netNS != "" {
		at, err := sb.AttachNetwork(ctx, nsPath, pod.netNS)
		if err != nil {
			return held, err
		}
		held = append(held, at)
	}
	if pod.role == podSandbox && hasShmBind(spec) {
		shm, err := sb.MountPodShm(ctx, podShmPath(id))
		if err != nil {
			return held, err
		}
		held = append(held, shm)
	}
	return held, nil
}

// netnsPath is the host network namespace a sandbox's spec names (CNI's
// /var/run/netns/cni-…), or "".
func netnsPath(s *specs.Spec) string {
	if s.Linux == nil {
		return ""
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// devShm is where a pod's containers see the pod-wide tmpfs.
const devShm = "/dev/shm"

// podShmOptions are the pod tmpfs's mount options: CRI's size for a
// sandbox's shm.
const podShmOptions = "nosuid,nodev,noexec,mode=1777,size=65536k"

// rewritePod turns what a pod task's spec says about the host into what
// the guest does: the host namespace paths become the pod's in the guest
// (the sandbox joins the guest namespace of the pod's network; net, ipc
// and uts of a container are the sandbox's, which the agent joins by the
// CRI annotations; a shared pid namespace is the sandbox init's), /dev/shm
// is the pod's tmpfs in the guest (MountPodShm), and a cgroups path
// the guest cannot take (systemd's slice:prefix:name) is left to the
// guest. g is the guest's copy; it is changed in place. Other host
// namespace paths are refused.
func rewritePod(g *specs.Spec, p podTask) error {
	if g.Linux == nil {
		return nil
	}
	l := *g.Linux
	l.Namespaces = nil
	for _, ns := range g.Linux.Namespaces {
		switch {
		case ns.Path == "":
		case p.role == podSandbox && ns.Type == specs.NetworkNamespace:
			ns.Path = ""
			if p.netNS != "" {
				w := specs.Windows{}
				if g.Windows != nil {
					w = *g.Windows
				}
				w.Network = &specs.WindowsNetwork{NetworkNamespace: p.netNS}
				g.Windows = &w
			}
		case p.role == podWorkload && (ns.Type == specs.NetworkNamespace || ns.Type == specs.IPCNamespace || ns.Type == specs.UTSNamespace):
			// The agent joins the sandbox's by the CRI annotations.
			ns.Path = ""
		case p.role == podWorkload && ns.Type == specs.PIDNamespace:
			if p.sandboxPid <= 0 {
				return fmt.Errorf("the pod's pid namespace: sandbox %q is not running: %w", p.sandboxID, errdefs.ErrFailedPrecondition)
			}
			ns.Path = fmt.Sprintf("/proc/%d/ns/pid", p.sandboxPid)
		default:
			return fmt.Errorf("joining the host namespace %s (%s) is impossible in a VM: %w", ns.Path, ns.Type, errdefs.ErrInvalidArgument)
		}
		l.Namespaces = append(l.Namespaces, ns)
	}
	if cp := l.CgroupsPath; cp != "" && (!path.IsAbs(cp) || path.Clean(cp) != cp || cp == "/") {
		l.CgroupsPath = ""
	}
	g.Linux = &l
	if p.role == notPod {
		return nil
	}
	mounts := make([]specs.Mount, 0, len(g.Mounts))
	for _, m := range g.Mounts {
		if path.Clean(m.Destination) == devShm && isHostBind(m) {
			// The pod's tmpfs in the guest (mountPodShm), the sandbox's
			// and every container's.
			m = specs.Mount{Destination: devShm, Type: "bind", Source: podShmPath(p.sandboxID), Options: withoutBind(m.Options)}
		}
		mounts = append(mounts, m)
	}
	g.Mounts = mounts
	return nil
}

// podShmPath is where the guest mounts pod sandbox id's /dev/shm tmpfs.
func podShmPath(id string) string { return "/run/uvmgcs/pods/" + id + "/shm" }

// hasShmBind reports whether a spec binds a host /dev/shm (CRI's sandbox
// shm), which a pod task gets from the pod's tmpfs in the guest instead.
func hasShmBind(s *specs.Spec) bool {
	for _, m := range s.Mounts {
		if path.Clean(m.Destination) == devShm && isHostBind(m) {
			return true
		}
	}
	return false
}

// withoutBind is a bind mount's options for a guest source: "rbind" and
// the rest as they were.
func withoutBind(opts []string) []string {
	out := []string{"rbind"}
	for _, o := range opts {
		if o != "bind" && o != "rbind" {
			out = append(out, o)
		}
	}
	return out
}

// isGuestBind reports whether m is a bind mount the rewriting made of a
// guest path (not shared from the host).
func isGuestBind(m specs.Mount) bool {
	return m.Destination == devShm && m.Type == "bind" && strings.HasPrefix(m.Source, "/run/uvmgcs/pods/")
}

// podSize is the VM a pod's sandbox asks for: the configured VM plus the
// pod's resources (the sum of its containers' limits, as containerd's CRI
// plugin annotates the sandbox), as kata sizes a pod's VM. vCPUs are not
// raised past the host's.
func podSize(cfg Config, s *specs.Spec) (memoryMiB, cpus int) {
	memoryMiB, cpus = cfg.MemoryMiB, cfg.CPUs
	if s == nil || s.Annotations[annotationContainerType] != containerTypeSandbox {
		return
	}
	a := s.Annotations
	if mem, err := strconv.ParseInt(a[annotationSandboxMemory], 10, 64); err == nil && mem > 0 {
		mib := mem >> 20
		if mem&(1<<20-1) != 0 {
			mib++
		}
		memoryMiB = int(min(int64(memoryMiB)+mib, maxMemoryMiB))
	}
	quota, qerr := strconv.ParseInt(a[annotationSandboxCPUQuota], 10, 64)
	period, perr := strconv.ParseInt(a[annotationSandboxCPUPer], 10, 64)
	if qerr == nil && perr == nil && quota > 0 && period > 0 {
		extra := int(min(quota/period+min(quota%period, 1), maxCPUs))
		cpus = min(cpus+extra, max(cpus, runtime.NumCPU()), maxCPUs)
	}
	return
}
