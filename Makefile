SHELL := /bin/bash
# uvmgcs: the guest compute service and its host library.
#
#   make run     install what is missing, build, boot a utility VM and run
#                `echo hello` in a container in it
#   make test    vet and test everything (root: real processes, namespaces)
#   make bench   benchmarks with their baselines
#   make build   out/gcs (static) and out/host-bridge
#   make all     build, and the utility VM's boot files: out/initrd.img,
#                out/rootfs.tar.gz, out/vmlinux (rootfs/build.sh)

GO      ?= go
OUT     := out
# e2fsprogs and erofs-utils make layer images; cryptsetup-bin's veritysetup
# makes dm-verity hash trees in the storage tests; hcsshim's guest (the
# reverse conformance suite, test/hcsshim/reverse) runs containers with runc;
# containernetworking-plugins (bridge, host-local, portmap, loopback in
# /usr/lib/cni; iptables) makes the pod networks of the host/podnet and VM
# networking tests.
APT_PKGS := gcc libc6-dev libseccomp-dev pkg-config busybox-static e2fsprogs erofs-utils cryptsetup-bin runc containernetworking-plugins
# What rootfs/build.sh needs, and what boots the VM.
BOOT_PKGS := xz-utils cpio kmod busybox-static
VM_PKGS   := qemu-system-x86
STATIC  := -tags 'seccomp netgo osusergo' -ldflags '-s -w -extldflags -static'
GCS     := $(abspath $(OUT)/gcs)
HOSTBR  := $(abspath $(OUT)/host-bridge)
BOOT_FILES := $(OUT)/initrd.img $(OUT)/rootfs.tar.gz $(OUT)/vmlinux
# Unit packages also run under the race detector.
RACE_PKGS := ./protocol/... ./transport/... ./guest/bridge/... ./guest/runtime/... ./host/ ./guest/storage/share/ ./host/uvm/
# The host library and CLI as a Windows host builds them (host/vm/hcs,
# hvsocket). host/vm/qemu and host/hostmode are build-tagged linux; guest/
# and cmd/gcs are Linux programs.
WINDOWS_PKGS := ./cmd/host-bridge ./host/... ./transport/... ./protocol/...

.PHONY: run-hostmode all build boot deps boot-deps bench-deps apt-install test fuzz bench run clean FORCE

all: build boot

build: $(OUT)/gcs $(OUT)/host-bridge

# Replace $@ by $@.new only when the bytes differ, so what depends on $@
# is not rebuilt for an identical binary.
replace-if-changed = if cmp -s $@.new $@; then rm -f $@.new; else mv -f $@.new $@; fi

# go's build cache makes these cheap when nothing changed.
$(OUT)/gcs: FORCE
	@mkdir -p $(OUT)
	CGO_ENABLED=1 $(GO) build -trimpath $(STATIC) -o $@.new ./cmd/gcs
	@$(replace-if-changed)

$(OUT)/host-bridge: FORCE
	@mkdir -p $(OUT)
	CGO_ENABLED=0 $(GO) build -ldflags '-s -w' -o $@ ./cmd/host-bridge

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
	@{ rootfs/build.sh --versions && echo "SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-0}"; } >$@.new
	@$(replace-if-changed)

$(BOOT_FILES) &: $(OUT)/gcs $(OUT)/init $(OUT)/boot-inputs rootfs/build.sh rootfs/modules.txt
	rootfs/build.sh $(OUT) $(OUT)/gcs $(OUT)/init

deps:
	@$(MAKE) --no-print-directory apt-install PKGS="$(APT_PKGS)"

boot-deps:
	@$(MAKE) --no-print-directory apt-install PKGS="$(BOOT_PKGS) $(VM_PKGS)"

# Debian's runc and crun: the baselines container benchmarks compare with.
bench-deps:
	@$(MAKE) --no-print-directory apt-install PKGS="runc crun"

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

test: deps all
	$(GO) vet ./...
	GOOS=windows $(GO) build $(WINDOWS_PKGS) && GOOS=windows $(GO) vet $(WINDOWS_PKGS)
	GCS_BINARY=$(GCS) $(GO) test -count=1 -v -timeout 20m ./... 2>&1 | tee $(OUT)/test.log; exit $${PIPESTATUS[0]}
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)
	$(MAKE) fuzz FUZZ=FuzzAgent FUZZTIME=30s

# The whole request path fuzzed through a real agent in a sandbox: FuzzAgent
# (one request of any type and body) or FuzzAgentSession (sequences of
# requests); findings land in guest/agent/testdata/fuzz.
FUZZ ?= FuzzAgent
FUZZTIME ?= 10m
fuzz: deps
	$(GO) test -run '^$$' -fuzz '^$(FUZZ)$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x -parallel 1 ./guest/agent

bench: deps bench-deps build
	GCS_BINARY=$(GCS) $(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...

clean:
	rm -rf $(OUT)

FORCE:
