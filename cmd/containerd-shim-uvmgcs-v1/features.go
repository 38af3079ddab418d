package main

import (
	"encoding/json"

	"github.com/opencontainers/runc/libcontainer/capabilities"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/types/known/anypb"
)

// featuresTypeURL is the type containerd registers for the OCI runtime
// features in RuntimeInfo (JSON, as typeurl encodes a non-protobuf type).
const featuresTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/features/Features"

// guestMountOptions and guestNamespaces are libcontainer's
// specconv.KnownMountOptions and KnownNamespaces, which need cgo to link;
// the shim is static without it (features_cgo_test.go checks they match).
var (
	guestMountOptions = []string{"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion",
		"lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion", "nolazytime", "nomand",
		"norelatime", "nostrictatime", "nosuid", "nosymfollow", "private", "ratime", "rbind", "rdev", "rdiratime",
		"relatime", "remount", "rexec", "rnoatime", "rnodev", "rnodiratime", "rnoexec", "rnorelatime", "rnostrictatime",
		"rnosuid", "rnosymfollow", "ro", "rprivate", "rrelatime", "rro", "rrw", "rshared", "rslave", "rstrictatime",
		"rsuid", "rsymfollow", "runbindable", "rw", "shared", "silent", "slave", "strictatime", "suid", "symfollow",
		"sync", "tmpcopyup", "unbindable"}
	guestNamespaces = []string{"cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"}
)

// guestFeatures are the OCI runtime features of the guest's agent, which
// runs containers with runc's libcontainer (the version this module
// requires) built with libseccomp: containerd 2.x's CRI reads them (the
// "rro" mount option makes it offer recursive read-only mounts). Hooks are
// none: the shim drops them, there is no host to run them on. AppArmor and
// SELinux are off in the guest; idmapped mounts (CRI user namespaces) are
// not offered.
func guestFeatures() *features.Features {
	t, f := true, false
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         []string{},
		MountOptions:  guestMountOptions,
		Linux: &features.Linux{
			Namespaces:   guestNamespaces,
			Capabilities: capabilities.KnownCapabilities(),
			Seccomp: &features.Seccomp{
				Enabled:    &t,
				Actions:    seccomp.KnownActions(),
				Operators:  seccomp.KnownOperators(),
				Archs:      seccomp.KnownArchs(),
				KnownFlags: seccomp.KnownFlags(),
			},
			Apparmor: &features.Apparmor{Enabled: &f},
			Selinux:  &features.Selinux{Enabled: &f},
		},
	}
}

// featuresAny is guestFeatures as RuntimeInfo.Features.
func featuresAny() (*anypb.Any, error) {
	b, err := json.Marshal(guestFeatures())
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: featuresTypeURL, Value: b}, nil
}
