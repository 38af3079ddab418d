package cri

import "fmt"

// configPaths are a node's private places.
type configPaths struct {
	root, state, sock, opt, cniConf, certs string
	shimConfig                             string // the uvmgcs handler's shim.toml
}

// criConfig is containerd's configuration for a CRI node: the schema of
// 1.6 (version 2, one CRI plugin) or of 2.x (version 3, CRI split into
// images and runtime plugins), the same settings in both.
func criConfig(v version, p configPaths) string {
	// NRI (2.x) listens on a socket of the whole host, /var/run/nri: a
	// second node on the machine could not start. No critest group here
	// needs it.
	common := fmt.Sprintf(`root = %q
state = %q
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, p.root, p.state, p.sock, p.opt)
	// restrict_oom_score_adj: this machine refuses an oom_score_adj below
	// the writer's own (the sandbox's default is -998); clamp to
	// containerd's.
	runtimes := func(prefix, extra string) string {
		return fmt.Sprintf(`  [%[1]s.containerd]
%[3]s    default_runtime_name = %[2]q
    [%[1]s.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [%[1]s.containerd.runtimes.uvmgcs]
      runtime_type = "io.containerd.uvmgcs.v1"
      pod_annotations = ["io.uvmgcs.*"]
      [%[1]s.containerd.runtimes.uvmgcs.options]
        ConfigPath = %[4]q
`, prefix, HandlerRunc, extra, p.shimConfig)
	}
	if !v.v2 {
		const cri = `plugins."io.containerd.grpc.v1.cri"`
		return "version = 2\n" + common + fmt.Sprintf(`[%[1]s]
  sandbox_image = %[2]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  restrict_oom_score_adj = true
  [%[1]s.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[3]q
    max_conf_num = 1
  [%[1]s.registry]
    config_path = %[4]q
`, cri, pauseImage, p.cniConf, p.certs) + runtimes(cri, "    snapshotter = \"overlayfs\"\n")
	}
	const images, runtime = `plugins."io.containerd.cri.v1.images"`, `plugins."io.containerd.cri.v1.runtime"`
	return "version = 3\n" + common + fmt.Sprintf(`[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[%[1]s]
  snapshotter = "overlayfs"
  [%[1]s.pinned_images]
    sandbox = %[3]q
  [%[1]s.registry]
    config_path = %[5]q
[%[2]s]
  disable_apparmor = true
  restrict_oom_score_adj = true
  [%[2]s.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = %[4]q
    max_conf_num = 1
`, images, runtime, pauseImage, p.cniConf, p.certs) + runtimes(runtime, "")
}
