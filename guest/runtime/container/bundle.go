package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/internal/names"
	"github.com/uvmgcs/gcs/protocol"
)

// Pod annotations (CRI).
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	containerTypeSandbox    = "sandbox"
	containerTypeContainer  = "container"
)

// maxSpecSize bounds the OCI spec a request may carry.
const maxSpecSize = 1 << 20

// bundle is a prepared container: its directory, spec and libcontainer
// configuration.
type bundle struct {
	dir       string
	scratch   string // removed on delete when inside the state root
	spec      *specs.Spec
	config    *configs.Config
	sandboxID string // the pod sandbox a workload container joins
	netns     string // the network namespace the spec names (Config.Network)
	sandbox   bool
}

// prepare validates cfg and turns it into a bundle under StateRoot/c/<id>.
func (m *Manager) prepare(ctx context.Context, id string, cfg *protocol.ContainerConfig) (*bundle, error) {
	if cfg.SchemaVersion.Major != 2 {
		return nil, fmt.Errorf("schema version %d.%d: want 2.x: %w", cfg.SchemaVersion.Major, cfg.SchemaVersion.Minor, protocol.HrInvalidArg)
	}
	if len(cfg.OciSpecification) == 0 || len(cfg.OciSpecification) > maxSpecSize {
		return nil, fmt.Errorf("OCI specification missing or over %d bytes: %w", maxSpecSize, protocol.HrInvalidArg)
	}
	var spec specs.Spec
	if err := json.Unmarshal(cfg.OciSpecification, &spec); err != nil {
		return nil, fmt.Errorf("OCI specification: %v: %w", err, protocol.HrVmcomputeInvalidJSON)
	}
	if spec.Process == nil || len(spec.Process.Args) == 0 || spec.Root == nil || spec.Root.Path == "" {
		return nil, fmt.Errorf("OCI specification needs process.args and root.path: %w", protocol.HrInvalidArg)
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	b := &bundle{dir: filepath.Join(m.cfg.StateRoot, "c", id), spec: &spec}
	if cfg.ScratchDirPath != "" && m.within(cfg.ScratchDirPath) {
		b.scratch = filepath.Clean(cfg.ScratchDirPath)
	}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return nil, fmt.Errorf("bundle directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(b.dir)
		}
	}()

	root := spec.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(b.dir, root)
	}
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("root filesystem %s: %v: %w", spec.Root.Path, err, protocol.HrInvalidArg)
	}
	if !m.within(root) {
		return nil, fmt.Errorf("root filesystem %s is outside %s: %w", root, m.cfg.StateRoot, protocol.HrInvalidArg)
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("root filesystem %s is not a directory: %w", root, protocol.HrInvalidArg)
	}
	spec.Root.Path = root

	if err := m.cgroupsPath(id, &spec); err != nil {
		return nil, err
	}
	if err := checkResources(spec.Linux.Resources); err != nil {
		return nil, err
	}
	if err := m.network(b); err != nil {
		return nil, err
	}
	if err := m.pod(b); err != nil {
		return nil, err
	}
	if err := m.etcFiles(b); err != nil {
		return nil, err
	}
	b.config, err = specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:   id,
		NoNewKeyring: true,
		NoPivotRoot:  m.cfg.NoPivotRoot,
		Spec:         &spec,
	})
	if err != nil {
		return nil, fmt.Errorf("OCI specification: %v: %w", err, protocol.HrInvalidArg)
	}
	ok = true
	return b, nil
}

// within reports whether p lies inside the state root.
func (m *Manager) within(p string) bool {
	p = filepath.Clean(p)
	return strings.HasPrefix(p+"/", m.cfg.StateRoot+"/") && p != m.cfg.StateRoot
}

// cgroupsPath puts the container under the agent's cgroup parent unless the
// spec names a clean absolute path of its own.
func (m *Manager) cgroupsPath(id string, spec *specs.Spec) error {
	p := spec.Linux.CgroupsPath
	if p == "" {
		spec.Linux.CgroupsPath = path.Join(m.cfg.CgroupParent, id)
		return nil
	}
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("cgroups path %q: want a clean absolute path: %w", p, protocol.HrInvalidArg)
	}
	return nil
}

// checkResources refuses limits no container can run under.
func checkResources(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	if r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 && *r.Memory.Limit < 1<<20 {
		return fmt.Errorf("memory limit %d bytes is below 1 MiB: %w", *r.Memory.Limit, protocol.HrInvalidArg)
	}
	if r.CPU != nil && r.CPU.Quota != nil && *r.CPU.Quota > 0 && *r.CPU.Quota < 1000 {
		return fmt.Errorf("CPU quota %d us is below 1 ms: %w", *r.CPU.Quota, protocol.HrInvalidArg)
	}
	if r.Pids != nil && r.Pids.Limit != nil && *r.Pids.Limit == 0 {
		return fmt.Errorf("pids limit 0: %w", protocol.HrInvalidArg)
	}
	return nil
}

// pod makes a workload container join its sandbox's network, IPC and UTS
// namespaces.
func (m *Manager) pod(b *bundle) error {
	a := b.spec.Annotations
	switch a[annotationContainerType] {
	case containerTypeSandbox:
		b.sandbox = true
		return nil
	case containerTypeContainer:
	default:
		return nil
	}
	sid := a[annotationSandboxID]
	if err := ValidateID(sid); err != nil {
		return fmt.Errorf("sandbox id: %w", err)
	}
	sb, err := m.get(sid)
	if err != nil {
		return fmt.Errorf("pod sandbox: %w", err)
	}
	pid, err := sb.initPid()
	if err != nil {
		return fmt.Errorf("pod sandbox %q: %w", sid, err)
	}
	b.sandboxID = sid
	for _, t := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace} {
		nsPath := fmt.Sprintf("/proc/%d/ns/%s", pid, nsFile(t))
		i := slices.IndexFunc(b.spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
		if i < 0 {
			b.spec.Linux.Namespaces = append(b.spec.Linux.Namespaces, specs.LinuxNamespace{Type: t, Path: nsPath})
		} else {
			b.spec.Linux.Namespaces[i].Path = nsPath
		}
	}
	// A joined UTS namespace keeps the sandbox's hostname.
	b.spec.Hostname = ""
	return nil
}

// network puts the container in the network namespace its spec names in
// windows.network.networkNamespace (hcsshim's field; a pod's containers
// share one), as Config.Network resolves it. A container without it keeps
// a namespace of its own.
func (m *Manager) network(b *bundle) error {
	w := b.spec.Windows
	if m.cfg.Network == nil || w == nil || w.Network == nil || w.Network.NetworkNamespace == "" {
		return nil
	}
	id := w.Network.NetworkNamespace
	// Its hosts file names the host: a pod's name must be one.
	if h := b.spec.Hostname; h != "" && !names.Hostname(h) {
		return fmt.Errorf("hostname %q: want RFC 1123 labels, at most 64 characters: %w", h, protocol.HrInvalidArg)
	}
	p, err := m.cfg.Network.NamespacePath(id)
	if err != nil {
		return fmt.Errorf("network namespace %q: %w", id, err)
	}
	i := slices.IndexFunc(b.spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
	if i < 0 {
		b.spec.Linux.Namespaces = append(b.spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: p})
	} else {
		b.spec.Linux.Namespaces[i].Path = p
	}
	b.netns = id
	return nil
}

func nsFile(t specs.LinuxNamespaceType) string {
	switch t {
	case specs.NetworkNamespace:
		return "net"
	case specs.IPCNamespace:
		return "ipc"
	case specs.UTSNamespace:
		return "uts"
	}
	return string(t)
}

// etcFiles gives the container /etc/hostname, /etc/hosts and
// /etc/resolv.conf: its own, or its sandbox's in a pod. Mounts the spec
// already has for them win.
func (m *Manager) etcFiles(b *bundle) error {
	src := b.dir
	if b.sandboxID != "" {
		src = filepath.Join(m.cfg.StateRoot, "c", b.sandboxID)
	} else {
		hostname := b.spec.Hostname
		if hostname == "" {
			hostname = "localhost"
		}
		resolv, err := os.ReadFile(m.cfg.ResolvConf)
		if err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("read %s: %w", m.cfg.ResolvConf, err)
		}
		// A pod network namespace with DNS settings has its own.
		if b.netns != "" {
			if r, ok := m.cfg.Network.ResolvConf(b.netns); ok {
				resolv = r
			}
		}
		files := map[string][]byte{
			"hostname":    []byte(hostname + "\n"),
			"hosts":       []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n"),
			"resolv.conf": resolv,
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(b.dir, name), data, 0o644); err != nil {
				return err
			}
		}
	}
	readOnlyFS := readOnlyFilesystem(b.spec.Root.Path)
	for _, name := range []string{"hostname", "hosts", "resolv.conf"} {
		dst := "/etc/" + name
		if slices.ContainsFunc(b.spec.Mounts, func(mt specs.Mount) bool { return path.Clean(mt.Destination) == dst }) {
			continue
		}
		// A read-only image without the file has nowhere to mount it:
		// the container goes without, as it would under runc.
		if _, err := os.Lstat(filepath.Join(b.spec.Root.Path, "etc", name)); err != nil && readOnlyFS {
			continue
		}
		opts := []string{"rbind", "rprivate"}
		if b.spec.Root.Readonly {
			opts = append(opts, "ro")
		}
		b.spec.Mounts = append(b.spec.Mounts, specs.Mount{
			Destination: dst, Type: "bind", Source: filepath.Join(src, name), Options: opts,
		})
	}
	return nil
}

// readOnlyFilesystem reports whether the file system holding dir is
// mounted read-only (an image layer with no scratch).
func readOnlyFilesystem(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Flags&unix.ST_RDONLY != 0
}
