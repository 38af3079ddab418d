SHELL := /bin/bash
# uvmgcs: the guest compute service and its host library.
#
#   make run     install what is missing, build, run `echo hello` through the agent
#   make test    vet and test everything (root: real processes, namespaces)
#   make bench   benchmarks with their baselines
#   make build   out/gcs (static) and out/host-bridge

GO      ?= go
OUT     := out
APT_PKGS := gcc libc6-dev libseccomp-dev pkg-config busybox-static
STATIC  := -tags 'seccomp netgo osusergo' -ldflags '-s -w -extldflags -static'
GCS     := $(abspath $(OUT)/gcs)
HOSTBR  := $(abspath $(OUT)/host-bridge)
# Unit packages also run under the race detector.
RACE_PKGS := ./protocol/... ./transport/... ./guest/bridge/... ./guest/runtime/... ./host/

.PHONY: all build deps bench-deps apt-install test bench run clean FORCE

all: build

build: $(OUT)/gcs $(OUT)/host-bridge

# go's build cache makes these cheap when nothing changed.
$(OUT)/gcs: FORCE
	@mkdir -p $(OUT)
	CGO_ENABLED=1 $(GO) build $(STATIC) -o $@ ./cmd/gcs

$(OUT)/host-bridge: FORCE
	@mkdir -p $(OUT)
	CGO_ENABLED=0 $(GO) build -ldflags '-s -w' -o $@ ./cmd/host-bridge

deps:
	@$(MAKE) --no-print-directory apt-install PKGS="$(APT_PKGS)"

# Debian's runc and crun: the baselines container benchmarks compare with.
bench-deps:
	@$(MAKE) --no-print-directory apt-install PKGS="runc crun"

apt-install:
	@missing=$$(for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

run: deps build
	$(HOSTBR) exec --guest $(GCS) -- echo hello

test: deps build
	$(GO) vet ./...
	GCS_BINARY=$(GCS) $(GO) test -count=1 -v -timeout 20m ./... 2>&1 | tee $(OUT)/test.log; exit $${PIPESTATUS[0]}
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)

bench: deps bench-deps build
	GCS_BINARY=$(GCS) $(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...

clean:
	rm -rf $(OUT)

FORCE:
