# OCI runtime conformance suite (runtime-tests/src/bin/berth-conformance.rs).
# Included by the main Makefile, which defines BERTH_BIN (the built berth) and ROOTFS (the
# busybox rootfs fixture). Defaults below only apply when this file is used on its own.
#
#   make conformance [RUNTIME=/usr/sbin/runc] [CONFORMANCE_FILTER=lifecycle,hooks]
#   make conformance-table          # berth, runc, crun side by side -> runtime-tests/CONFORMANCE.md

CARGO ?= cargo
CONF_TRIPLE := x86_64-unknown-linux-gnu
CONF_TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
CONF_BIN := $(CONF_TARGET_DIR)/$(CONF_TRIPLE)/debug/berth-conformance
CONF_PROBE := $(CONF_TARGET_DIR)/$(CONF_TRIPLE)/debug/berth-probe
BERTH_BIN ?= $(CONF_TARGET_DIR)/$(CONF_TRIPLE)/debug/berth
ROOTFS ?= $(CURDIR)/rootfs-fixtures/out/rootfs
RUNTIME ?= $(BERTH_BIN)
RUNC ?= /usr/sbin/runc
CRUN ?= /usr/bin/crun
CONFORMANCE_FILTER ?=
CONFORMANCE_FORMAT ?= tap
CONF_OUT := $(CONF_TARGET_DIR)/conformance
CONF_ENV = BERTH_PROBE=$(CONF_PROBE) BERTH_TEST_ROOTFS=$(ROOTFS)
CONF_FLAGS = --keep-going $(if $(CONFORMANCE_FILTER),--filter $(CONFORMANCE_FILTER))

.PHONY: conformance conformance-build conformance-rootfs conformance-table

conformance-build:
	$(CARGO) build -p runtime-tests --bin berth-conformance -p berth-probe
	@if [ "$(RUNTIME)" = "$(BERTH_BIN)" ] || [ "$(MAKECMDGOALS)" = conformance-table ]; then \
		$(CARGO) build -p berth || echo "conformance: berth does not build; its column will be empty" >&2; \
	fi

conformance-rootfs:
	@[ -x "$(ROOTFS)/bin/busybox" ] || sh rootfs-fixtures/build-rootfs.sh "$(ROOTFS)"

# Runs the suite against $(RUNTIME); exits non-zero when a case is not ok.
conformance: conformance-build conformance-rootfs
	$(CONF_ENV) $(CONF_BIN) --runtime $(RUNTIME) --format $(CONFORMANCE_FORMAT) $(CONF_FLAGS)

# One JSON report a runtime (missing runtimes are left out), merged into a markdown table.
conformance-table: conformance-build conformance-rootfs
	@mkdir -p $(CONF_OUT)
	@merge=; for rt in berth=$(BERTH_BIN) runc=$(RUNC) crun=$(CRUN); do \
		name=$${rt%%=*}; bin=$${rt#*=}; \
		if [ -x "$$bin" ]; then \
			echo "conformance: $$name ($$bin)"; \
			$(CONF_ENV) $(CONF_BIN) --runtime $$bin --format json $(CONF_FLAGS) \
				--out $(CONF_OUT)/$$name.json || true; \
			merge="$$merge --merge $$name=$(CONF_OUT)/$$name.json"; \
		else \
			echo "conformance: $$name not found at $$bin, left out" >&2; \
		fi; \
	done; \
	$(CONF_BIN) $$merge --out runtime-tests/CONFORMANCE.md
	@echo "wrote runtime-tests/CONFORMANCE.md"
