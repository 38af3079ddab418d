SHELL := /bin/bash
# uvmgcs: the guest compute service and its host library.
#
#   make run     install what is missing, build, boot a utility VM and run
#                `echo hello` in a container in it
#   make test    vet and test everything (root: real processes, namespaces)
#   make bench   benchmarks with their baselines
#   make build   out/gcs (static), out/host-bridge, out/containerd-shim-uvmgcs-v1
#   make install the containerd shim and the VM's boot files under $(PREFIX)
#   make all     build, and the utility VM's boot files: out/initrd.img,
#                out/rootfs.tar.gz, out/vmlinux (rootfs/build.sh)
#
# KERNEL=uvm (the default) boots the kernel rootfs/kernel.sh builds from
# linux-source-6.1 and rootfs/kernel.config, cached in $(CACHE)/uvm-kernel
# by source version and config digest (one build: about 15 CPU-minutes,
# 8 minutes on 2 idle cores, once per CI run); KERNEL=debian boots Debian's
# linux-image-amd64 with its modules.

GO      ?= go
OUT     := out
KERNEL  ?= uvm
CACHE   ?= $(OUT)/cache
# The agent's C toolchain: musl, and libseccomp built for it from the
# release source the Go module proxy serves (rootfs/libseccomp-musl.sh,
# about 20 s once; cached).
LIBSECCOMP_VERSION := v2.6.0
MUSL_SECCOMP := $(abspath $(CACHE)/libseccomp-musl-$(LIBSECCOMP_VERSION))
MUSL_PKGS := musl-tools linux-libc-dev gcc make autoconf automake libtool gperf
# e2fsprogs and erofs-utils make layer images; cryptsetup-bin's veritysetup
# makes dm-verity hash trees in the storage tests; hcsshim's guest (the
# reverse conformance suite, test/hcsshim/reverse) runs containers with runc;
# containernetworking-plugins (bridge, host-local, portmap, loopback in
# /usr/lib/cni; iptables) makes the pod networks of the host/podnet and VM
# networking tests.
APT_PKGS := gcc libc6-dev pkg-config $(MUSL_PKGS) busybox-static e2fsprogs erofs-utils cryptsetup-bin runc containernetworking-plugins
# What rootfs/build.sh needs, and what boots the VM.
BOOT_PKGS := xz-utils cpio kmod busybox-static lz4
# What rootfs/kernel.sh needs to build the UVM kernel.
KERNEL_PKGS := linux-source-6.1 patch make gcc libc6-dev bc flex bison libelf-dev
VM_PKGS   := qemu-system-x86
STATIC  := -tags 'seccomp netgo osusergo' -ldflags '-s -w -extldflags -static'
GCS     := $(abspath $(OUT)/gcs)
HOSTBR  := $(abspath $(OUT)/host-bridge)
SHIM    := $(OUT)/containerd-shim-uvmgcs-v1
PREFIX  ?= /usr/local
# The containerd versions the shim is tested against: Debian's (apt) and
# v2.4.2 built from the Go module proxy into out/cache (about a minute, once).
CONTAINERD2_VERSION := v2.4.2
CONTAINERD2_DIR     := $(abspath $(OUT)/cache/containerd-$(CONTAINERD2_VERSION))
BOOT_FILES := $(OUT)/initrd.img $(OUT)/rootfs.tar.gz $(OUT)/vmlinux
# Unit packages also run under the race detector.
RACE_PKGS := ./protocol/... ./transport/... ./guest/bridge/... ./guest/runtime/... ./host/ ./guest/storage/share/ ./host/uvm/ ./shim/...
# The host library and CLI as a Windows host builds them (host/vm/hcs,
# hvsocket). host/vm/qemu and host/hostmode are build-tagged linux; guest/
# and cmd/gcs are Linux programs.
WINDOWS_PKGS := ./cmd/host-bridge ./host/... ./transport/... ./protocol/...

.PHONY: run-hostmode all build boot deps boot-deps kernel-deps bench-deps containerd-deps cri-deps cri-tools critest apt-install test fuzz bench run install busybox-image clean FORCE

all: build boot

build: $(OUT)/gcs $(OUT)/host-bridge $(SHIM)

# Replace $@ by $@.new only when the bytes differ, so what depends on $@
# is not rebuilt for an identical binary.
replace-if-changed = if cmp -s $@.new $@; then rm -f $@.new; else mv -f $@.new $@; fi

# go's build cache makes these cheap when nothing changed.
#
# The agent is linked statically against musl, not glibc. Every container
# init and exec re-executes the agent's binary, and static glibc's start-up
# sizes the CPU caches with about a hundred CPUID instructions, each a trap
# to the hypervisor in a VM (6.4 us each on this nested-virtualised host:
# 0.6 ms of CPU in every container start and exec); musl's start-up runs
# none, and the binary is 0.8 MB smaller. libseccomp, which libcontainer's
# seccomp support links, is built for musl once into the cache.
$(OUT)/gcs: $(MUSL_SECCOMP)/.done FORCE
	@mkdir -p $(OUT)
	CGO_ENABLED=1 CC=musl-gcc PKG_CONFIG_LIBDIR=$(MUSL_SECCOMP)/lib/pkgconfig CGO_CFLAGS="-O2 -I$(MUSL_SECCOMP)/kernel-headers" \
		$(GO) build -trimpath $(STATIC) -o $@.new ./cmd/gcs
	@$(replace-if-changed)

$(MUSL_SECCOMP)/.done:
	@$(MAKE) --no-print-directory apt-install PKGS="$(MUSL_PKGS)"
	GO=$(GO) rootfs/libseccomp-musl.sh $(LIBSECCOMP_VERSION) $(MUSL_SECCOMP)

$(OUT)/host-bridge: FORCE
	@mkdir -p $(OUT)
	CGO_ENABLED=0 $(GO) build -ldflags '-s -w' -o $@ ./cmd/host-bridge

$(SHIM): FORCE
	@mkdir -p $(OUT)
	CGO_ENABLED=0 $(GO) build -ldflags '-s -w' -o $@ ./cmd/containerd-shim-uvmgcs-v1

# The utility VM's PID 1.
$(OUT)/init: FORCE
	@mkdir -p $(OUT)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@.new ./rootfs/init
	@$(replace-if-changed)

boot: $(BOOT_FILES)

# What apt decides (the kernel linux-image-amd64 names, busybox's version)
# is an input too: this file changes only when one of them does.
$(OUT)/boot-inputs: boot-deps
	@mkdir -p $(OUT)
	@{ KERNEL=$(KERNEL) rootfs/build.sh --versions && echo "SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-0} KERNEL=$(KERNEL)"; } >$@.new
	@$(replace-if-changed)

$(BOOT_FILES) &: $(OUT)/gcs $(OUT)/init $(OUT)/boot-inputs rootfs/build.sh rootfs/modules.txt rootfs/kernel.sh rootfs/kernel.config $(wildcard rootfs/kernel-patches/*.patch)
	KERNEL=$(KERNEL) CACHE=$(abspath $(CACHE)) rootfs/build.sh $(OUT) $(OUT)/gcs $(OUT)/init

# Debian's kernel and its modules around the same agent and init, in
# out/debian: the baseline `make bench` measures beside make all's files.
DEBIAN_BOOT := $(OUT)/debian/initrd.img $(OUT)/debian/vmlinux
$(OUT)/debian/boot-inputs: FORCE
	@mkdir -p $(OUT)/debian
	@$(MAKE) --no-print-directory boot-deps KERNEL=debian
	@{ KERNEL=debian rootfs/build.sh --versions && echo "SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-0} KERNEL=debian"; } >$@.new
	@$(replace-if-changed)

$(DEBIAN_BOOT) &: $(OUT)/gcs $(OUT)/init $(OUT)/debian/boot-inputs rootfs/build.sh rootfs/modules.txt
	KERNEL=debian CACHE=$(abspath $(CACHE)) rootfs/build.sh $(OUT)/debian $(OUT)/gcs $(OUT)/init

deps:
	@$(MAKE) --no-print-directory apt-install PKGS="$(APT_PKGS)"

boot-deps:
	@$(MAKE) --no-print-directory apt-install PKGS="$(BOOT_PKGS) $(VM_PKGS) $(if $(filter uvm,$(KERNEL)),$(KERNEL_PKGS))"

# What rootfs/kernel.sh needs; boot-deps installs it when KERNEL=uvm.
kernel-deps:
	@$(MAKE) --no-print-directory apt-install PKGS="$(KERNEL_PKGS)"

# Debian's runc and crun: the baselines container benchmarks compare with.
bench-deps:
	@$(MAKE) --no-print-directory apt-install PKGS="runc crun"

# containerd 1.6 (Debian; its runc shim is the benchmarks' baseline) and
# containerd v2.4.2 with its ctr and its own runc shim (2.4's shim
# bootstrap is not 1.6's: test/cri runs each containerd with the runc shim
# beside it), for test/containerd and test/cri.
containerd-deps:
	@$(MAKE) --no-print-directory apt-install PKGS="containerd runc"
	@test -x $(CONTAINERD2_DIR)/containerd -a -x $(CONTAINERD2_DIR)/ctr -a -x $(CONTAINERD2_DIR)/containerd-shim-runc-v2 || { \
		echo "building containerd $(CONTAINERD2_VERSION) into $(CONTAINERD2_DIR)"; \
		GOBIN=$(CONTAINERD2_DIR) $(GO) install github.com/containerd/containerd/v2/cmd/containerd@$(CONTAINERD2_VERSION) \
			github.com/containerd/containerd/v2/cmd/ctr@$(CONTAINERD2_VERSION) \
			github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$(CONTAINERD2_VERSION); }

# test/cri: both containerds, the CNI plugins, Debian's docker-registry
# (the offline registry critest pulls from), and crictl and critest
# v$(CRI_TOOLS_VERSION) built from the Go module proxy into $(CRI_TOOLS_DIR)
# (a few minutes, once; cached after).
CRI_TOOLS_VERSION := v1.37.0
CRI_TOOLS_DIR     := $(abspath $(OUT)/cache/cri-tools-$(CRI_TOOLS_VERSION))
cri-deps: containerd-deps
	@$(MAKE) --no-print-directory apt-install PKGS="containernetworking-plugins docker-registry iptables"

cri-tools:
	@test -x $(CRI_TOOLS_DIR)/crictl || { \
		echo "building crictl $(CRI_TOOLS_VERSION) into $(CRI_TOOLS_DIR)"; \
		GOBIN=$(CRI_TOOLS_DIR) $(GO) install sigs.k8s.io/cri-tools/cmd/crictl@$(CRI_TOOLS_VERSION); }
	@test -x $(CRI_TOOLS_DIR)/critest || { \
		echo "building critest $(CRI_TOOLS_VERSION) into $(CRI_TOOLS_DIR)"; \
		set -e; mod=$$(mktemp -d); trap 'rm -rf $$mod' EXIT; cd $$mod; \
		$(GO) mod init critest-build >/dev/null 2>&1; \
		$(GO) mod edit -require=sigs.k8s.io/cri-tools@$(CRI_TOOLS_VERSION); \
		printf '//go:build tools\n\npackage tools\n\nimport _ "sigs.k8s.io/cri-tools/cmd/critest"\n' >tools.go; \
		GOFLAGS=-mod=mod $(GO) mod tidy >/dev/null; \
		GOFLAGS=-mod=mod $(GO) test -c -o $(CRI_TOOLS_DIR)/critest sigs.k8s.io/cri-tools/cmd/critest; }

# critest's chosen groups on containerd 1.6 and 2.4.2, on the runc handler
# and then on uvmgcs (test/cri's TestCritest, also part of make test: about
# 12 minutes per version; test/cri/README.md lists the groups, every skip
# and the counts).
critest: deps all cri-deps cri-tools
	$(GO) test -count=1 -v -timeout 60m -run '^TestCritest$$' ./test/cri/

apt-install:
	@missing=$$(for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# A container in a utility VM booted from make all's files: the default
# busybox image on a layer disk, a scratch disk, `echo hello`.
run: deps all
	$(HOSTBR) run -- echo hello

# The same through the agent on this host (no VM): a process, host mode.
run-hostmode: deps build
	$(HOSTBR) exec --guest $(GCS) -- echo hello

# The longest package is test/cri: critest on runc and then on uvmgcs (a
# VM per pod under TCG), on containerd 1.6 and 2.4.2: about 25 minutes.
test: deps all containerd-deps cri-deps cri-tools
	$(GO) vet ./...
	GOOS=windows $(GO) build $(WINDOWS_PKGS) && GOOS=windows $(GO) vet $(WINDOWS_PKGS)
	GCS_BINARY=$(GCS) $(GO) test -count=1 -v -timeout 50m ./... 2>&1 | tee $(OUT)/test.log; exit $${PIPESTATUS[0]}
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)
	$(MAKE) fuzz FUZZ=FuzzAgent FUZZTIME=30s

# The whole request path fuzzed through a real agent in a sandbox: FuzzAgent
# (one request of any type and body) or FuzzAgentSession (sequences of
# requests); findings land in guest/agent/testdata/fuzz.
FUZZ ?= FuzzAgent
FUZZTIME ?= 10m
fuzz: deps
	$(GO) test -run '^$$' -fuzz '^$(FUZZ)$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x -parallel 1 ./guest/agent

bench: deps bench-deps containerd-deps all $(DEBIAN_BOOT)
	GCS_BINARY=$(GCS) $(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

# containerd finds the shim on its PATH by the runtime type
# io.containerd.uvmgcs.v1; the shim finds the VM's boot files in
# $(PREFIX)/share/uvmgcs unless /etc/uvmgcs/shim.toml says otherwise.
install: all
	install -D -m 0755 $(SHIM) $(DESTDIR)$(PREFIX)/bin/containerd-shim-uvmgcs-v1
	install -D -m 0644 $(OUT)/vmlinux $(DESTDIR)$(PREFIX)/share/uvmgcs/vmlinux
	install -D -m 0644 $(OUT)/initrd.img $(DESTDIR)$(PREFIX)/share/uvmgcs/initrd.img

# A busybox image (Debian's busybox-static) as an OCI archive for
# `ctr images import`, named docker.io/uvmgcs/busybox:latest.
busybox-image: deps
	$(GO) run ./internal/ociimage/mkbusybox -o $(OUT)/busybox-oci.tar

clean:
	rm -rf $(OUT)

FORCE:
