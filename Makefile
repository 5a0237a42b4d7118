# Berth: build, demo, test, bench, lint.
#
#   make demo    install what is needed, build, make a busybox bundle and run a container
#   make test    install, build and run every test (unit, runtime-tests, conformance, v2 VM)
#   make bench   berth against runc and crun, berthd against dockerd (not part of test)
#
# Everything installs from Debian's packages; run as root.

SHELL := /bin/bash
CARGO ?= cargo
TRIPLE := x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR ?= $(CURDIR)/target
REL := $(CARGO_TARGET_DIR)/$(TRIPLE)/release
DBG := $(CARGO_TARGET_DIR)/$(TRIPLE)/debug
BERTH_BIN := $(DBG)/berth
BERTH_RELEASE := $(REL)/berth
OUT := $(CURDIR)/rootfs-fixtures/out
ROOTFS := $(OUT)/rootfs
DEMO_BUNDLE := $(OUT)/demo-bundle
NEXTEST_PROFILE ?= default

APT_PACKAGES := busybox-static libseccomp-dev pkg-config runc crun skopeo umoci \
	docker-registry apache2-utils hyperfine openssl procps time util-linux bsdutils \
	containerd docker.io podman containernetworking-plugins gcc libc6-dev \
	python3-docker

export BERTH_BIN
export BERTH_PROBE := $(DBG)/berth-probe
export BERTH_IMAGE_BIN := $(DBG)/berth-image
export BERTH_TEST_ROOTFS := $(ROOTFS)

.PHONY: all deps build build-release rootfs demo daemon test bench lint clean

all: build

# Install the Debian packages that are missing (apt-get only when something is).
deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest

build: deps
	$(CARGO) build --workspace --all-targets

# Two invocations: built together, berth would get berth-image-cli's dependency features.
build-release: deps
	$(CARGO) build --release -p berth
	$(CARGO) build --release -p berth-image-cli
	$(CARGO) build --release -p berthd

$(ROOTFS)/bin/busybox: rootfs-fixtures/build-rootfs.sh
	@$(MAKE) --no-print-directory deps
	sh rootfs-fixtures/build-rootfs.sh $(ROOTFS)

rootfs: $(ROOTFS)/bin/busybox

# A real container: hostname, pid 1 and id from inside.
demo: build-release rootfs
	@rm -rf $(DEMO_BUNDLE) && mkdir -p $(DEMO_BUNDLE)
	@cp -a $(ROOTFS) $(DEMO_BUNDLE)/rootfs
	@cd $(DEMO_BUNDLE) && $(BERTH_RELEASE) spec && \
		sed -i -e 's/"terminal": true/"terminal": false/' \
		       -e 's|^\(\s*\)"sh"$$|\1"sh", "-c", "echo hostname: $$(hostname); echo pid: $$$$; id"|' config.json
	$(BERTH_RELEASE) --root $(OUT)/demo-state run --bundle $(DEMO_BUNDLE) berth-demo-$$$$

# berthd in the foreground on /run/berth/berthd.sock (data in /var/lib/berth), with a busybox
# image archive to load: DOCKER_HOST=unix:///run/berth/berthd.sock docker load -i $(OUT)/busybox.tar
BERTHD_FLAGS ?= -H unix:///run/berth/berthd.sock
daemon: build-release rootfs
	@[ -f $(OUT)/busybox.tar ] || sh rootfs-fixtures/build-image-tar.sh $(OUT)/busybox.tar $(ROOTFS)
	@echo "export DOCKER_HOST=unix:///run/berth/berthd.sock; docker load -i $(OUT)/busybox.tar"
	$(REL)/berthd $(BERTHD_FLAGS)

# Every test: the lint (fmt, clippy with the unsafe-comment lint), unit and integration tests
# of all crates (runtime-tests create real containers as root), the conformance suite against
# berth, and the pure cgroup v2 suite in a VM.
test: build rootfs lint
	$(CARGO) nextest run --workspace --no-fail-fast --profile $(NEXTEST_PROFILE)
	$(CARGO) test --workspace --doc
	$(MAKE) --no-print-directory test-v2vm

bench: build-release rootfs
	bash bench/runtime.sh $(BERTH_RELEASE) $(ROOTFS)
	BERTH_BIN=$(BERTH_RELEASE) sh bench/engines.sh
	sh bench/image.sh
	BERTH_BIN=$(BERTH_RELEASE) sh bench/cri.sh
	bash bench/daemon.sh $(REL)/berthd $(ROOTFS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(OUT)

-include conformance.mk
-include v2vm.mk
