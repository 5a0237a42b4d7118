# berth on a pure cgroup v2 kernel, for real: one throw-away qemu VM (shared/tools/run-in-v2vm.sh,
# cgroup_no_v1=all, every controller) runs runtime-tests/v2vm/driver.sh against the release berth.
# Included by the main Makefile (`make test` calls test-v2vm); works on its own too:
#
#   make -f v2vm.mk test-v2vm [V2VM_CASES="devices cgroupns"] [V2VM_VERBOSE_CASES=1]
#
# Fails on any failed case and when the VM cannot boot (run-in-v2vm.sh exit 125) or times out
# (124).  Skips, with a message and status 0, only when qemu cannot be had on this machine.
# Software emulation (no /dev/kvm needed) is slow: the whole suite is one VM, under 10 minutes.

CARGO ?= cargo
V2VM_TRIPLE := x86_64-unknown-linux-gnu
V2VM_TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
V2VM_BERTH := $(V2VM_TARGET_DIR)/$(V2VM_TRIPLE)/release/berth
V2VM_RUN ?= $(CURDIR)/../shared/tools/run-in-v2vm.sh
# the VM's /share: berth, the busybox rootfs, the driver (under target/, git-ignored)
V2VM_DIR := $(CURDIR)/target/v2vm
V2VM_CASES ?=
V2VM_VERBOSE_CASES ?= 0
V2VM_CACHE_DIR := $(or $(V2VM_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/v2vm)

.PHONY: test-v2vm v2vm-build v2vm-share v2vm-setup

v2vm-build:
	$(CARGO) build --release -p berth

v2vm-share: v2vm-build
	@[ -x /bin/busybox ] || apt-get install -y -q busybox-static
	@mkdir -p $(V2VM_DIR)
	@[ -x $(V2VM_DIR)/rootfs/bin/busybox ] && cmp -s /bin/busybox $(V2VM_DIR)/rootfs/bin/busybox || \
		sh rootfs-fixtures/build-rootfs.sh $(V2VM_DIR)/rootfs
	@cp $(V2VM_BERTH) $(V2VM_DIR)/berth
	@cp runtime-tests/v2vm/driver.sh $(V2VM_DIR)/driver.sh
	@file $(V2VM_DIR)/berth 2>/dev/null | grep -q 'dynamically linked' && \
		{ echo "test-v2vm: $(V2VM_BERTH) is dynamically linked; the VM needs a static berth" >&2; exit 1; } || true

# Downloads/extracts kernel, busybox and (when not installed) qemu into the cache. A failure
# here is a skip only when qemu-system-x86_64 could not be had at all.
v2vm-setup:
	@[ -x "$(V2VM_RUN)" ] || { echo "test-v2vm: FAIL: $(V2VM_RUN) not found (shared/ must sit beside the repo)" >&2; exit 1; }
	@if ! "$(V2VM_RUN)" --setup >$(V2VM_DIR)/setup.log 2>&1; then \
		cat $(V2VM_DIR)/setup.log >&2; \
		if ! command -v qemu-system-x86_64 >/dev/null && [ ! -f "$(V2VM_CACHE_DIR)/qemu/.done" ]; then \
			echo "test-v2vm: SKIP: qemu-system-x86_64 is not installed and cannot be extracted here" >&2; \
			touch $(V2VM_DIR)/.skip; \
		else \
			echo "test-v2vm: FAIL: the v2 VM cannot be set up" >&2; exit 1; \
		fi; \
	else rm -f $(V2VM_DIR)/.skip; fi

test-v2vm: v2vm-share v2vm-setup
	@if [ -f $(V2VM_DIR)/.skip ]; then echo "test-v2vm: skipped (no qemu)"; exit 0; fi; \
	echo "test-v2vm: booting one cgroup v2 VM (software emulation: a few minutes)"; \
	start=$$(date +%s); \
	{ V2VM_SHARE=$(V2VM_DIR) V2VM_ENV=V2VM_VERBOSE_CASES V2VM_VERBOSE_CASES=$(V2VM_VERBOSE_CASES) \
		"$(V2VM_RUN)" sh driver.sh $(V2VM_CASES) 2>&1; echo $$? > $(V2VM_DIR)/rc; } | tee $(V2VM_DIR)/report.tap; \
	rc=$$(cat $(V2VM_DIR)/rc); wall=$$(( $$(date +%s) - start )); \
	case $$rc in \
	0) echo "test-v2vm: PASS (wall $${wall}s; report: $(V2VM_DIR)/report.tap)"; \
	   grep '^v2vm: [0-9]* passed' $(V2VM_DIR)/report.tap | tail -1;; \
	124) echo "test-v2vm: FAIL: the VM timed out (wall $${wall}s)" >&2;; \
	125) echo "test-v2vm: FAIL: the VM could not boot or broke down (exit 125); rerun with V2VM_VERBOSE=1 for the console" >&2;; \
	*) grep -q '^v2vm: [0-9]* passed' $(V2VM_DIR)/report.tap || echo "v2vm: the driver ended early (exit $$rc)" >&2; \
	   echo "test-v2vm: FAIL (exit $$rc, wall $${wall}s; report: $(V2VM_DIR)/report.tap)" >&2;; \
	esac; \
	[ $$rc = 0 ]
