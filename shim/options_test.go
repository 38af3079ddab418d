package shim

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// runtimeOptions encodes runtimeoptions.v1.Options as CRI and ctr send it.
func runtimeOptions(path, body string) *anypb.Any {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "io.containerd.uvmgcs.v1.Options")
	if path != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, path)
	}
	if body != "" {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, body)
	}
	return &anypb.Any{TypeUrl: "runtimeoptions.v1.Options", Value: b}
}

func TestLoadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shim.toml")
	if err := os.WriteFile(path, []byte("cpus = 2\nmemory_mib = 1024\nkernel = \"/k\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(runtimeOptions(path, ""))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CPUs != 2 || cfg.MemoryMiB != 1024 || cfg.Kernel != "/k" || cfg.Initrd != defaultConfig().Initrd {
		t.Fatalf("config from ConfigPath: %+v", cfg)
	}
	cfg, err = loadConfig(runtimeOptions("", "scratch_mib = 64\n"))
	if err != nil || cfg.ScratchMiB != 64 {
		t.Fatalf("config from ConfigBody: %+v %v", cfg, err)
	}
	for name, opts := range map[string]*anypb.Any{
		"bad toml":      runtimeOptions("", "cpus = \n"),
		"too many cpus": runtimeOptions("", "cpus = 1000\n"),
		"relative path": runtimeOptions("", "initrd = \"initrd.img\"\n"),
		"unknown type":  {TypeUrl: "io.containerd.runc.v1.Options", Value: []byte{8, 1}},
		"bad protobuf":  {TypeUrl: "runtimeoptions.v1.Options", Value: []byte{0x12, 0x40}},
	} {
		if _, err := loadConfig(opts); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := loadConfig(runtimeOptions(filepath.Join(t.TempDir(), "missing.toml"), "")); err == nil {
		t.Error("a missing config file was accepted")
	}
}
