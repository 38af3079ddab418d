package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// Where make install puts the boot files and the default configuration.
const (
	DefaultBootDir    = "/usr/local/share/uvmgcs"
	DefaultConfigPath = "/etc/uvmgcs/shim.toml"
	DefaultLayerCache = "/var/lib/uvmgcs/layers"
)

// Bounds on what a configuration may ask for.
const (
	maxCPUs       = 64
	maxMemoryMiB  = 1 << 20
	maxScratchMiB = 1 << 22
)

// Config is the shim's configuration: the VM a group's tasks run in and
// where layer disks are cached. It is read from the TOML file the runtime
// options name (containerd's `options.ConfigPath` for the runtime, or
// `ctr run --runtime-config-path`), else DefaultConfigPath when it exists.
type Config struct {
	Kernel     string `toml:"kernel"`
	Initrd     string `toml:"initrd"`
	KernelArgs string `toml:"kernel_args"`
	CPUs       int    `toml:"cpus"`
	MemoryMiB  int    `toml:"memory_mib"`
	// ScratchMiB sizes each container's writable layer (a sparse file).
	ScratchMiB int64 `toml:"scratch_mib"`
	// LayerCache holds the read-only layer disks made from snapshots.
	LayerCache string `toml:"layer_cache"`
	// ConsoleLog, when set, receives the VM's serial console.
	ConsoleLog string `toml:"console_log"`
}

func defaultConfig() Config {
	return Config{
		Kernel:     filepath.Join(DefaultBootDir, "vmlinux"),
		Initrd:     filepath.Join(DefaultBootDir, "initrd.img"),
		CPUs:       1,
		MemoryMiB:  512,
		ScratchMiB: 1024,
		LayerCache: DefaultLayerCache,
	}
}

// runtimeOptionsType is the type containerd's CRI plugin and ctr use for
// the options of a runtime other than runc (runtimeoptions.v1.Options:
// type_url = 1, config_path = 2, config_body = 3).
const runtimeOptionsType = "runtimeoptions.v1.Options"

// loadConfig reads the configuration the runtime options name.
func loadConfig(opts *anypb.Any) (Config, error) {
	cfg := defaultConfig()
	var path string
	var body []byte
	if opts != nil && len(opts.GetValue()) > 0 {
		if !strings.HasSuffix(opts.GetTypeUrl(), runtimeOptionsType) {
			return cfg, fmt.Errorf("runtime options of type %s: want %s (ConfigPath): %w", opts.GetTypeUrl(), runtimeOptionsType, errdefs.ErrInvalidArgument)
		}
		var err error
		if path, body, err = decodeRuntimeOptions(opts.GetValue()); err != nil {
			return cfg, fmt.Errorf("runtime options: %w: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	if len(body) == 0 {
		if path == "" {
			if _, err := os.Stat(DefaultConfigPath); err != nil {
				return cfg, cfg.validate()
			}
			path = DefaultConfigPath
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("shim config: %w", err)
		}
		body = b
	}
	if err := toml.Unmarshal(body, &cfg); err != nil {
		return cfg, fmt.Errorf("shim config %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	return cfg, cfg.validate()
}

func decodeRuntimeOptions(b []byte) (path string, body []byte, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", nil, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return "", nil, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 2:
			path = string(v)
		case 3:
			body = v
		}
	}
	return path, body, nil
}

func (c Config) validate() error {
	var errs []error
	if c.CPUs < 1 || c.CPUs > maxCPUs {
		errs = append(errs, fmt.Errorf("cpus %d: want 1-%d", c.CPUs, maxCPUs))
	}
	if c.MemoryMiB < 64 || c.MemoryMiB > maxMemoryMiB {
		errs = append(errs, fmt.Errorf("memory_mib %d: want 64-%d", c.MemoryMiB, maxMemoryMiB))
	}
	if c.ScratchMiB < 16 || c.ScratchMiB > maxScratchMiB {
		errs = append(errs, fmt.Errorf("scratch_mib %d: want 16-%d", c.ScratchMiB, maxScratchMiB))
	}
	for name, p := range map[string]string{"kernel": c.Kernel, "initrd": c.Initrd, "layer_cache": c.LayerCache} {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("%s %q: want an absolute path", name, p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shim config: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	return nil
}
