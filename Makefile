# safeguard — the two commands:
#   make run    build and start the agent with the configuration built into it
#   make test   every test: lint, unit, host integration, and BPF-LSM in VMs
# Each installs what it needs first (scripts/setup.sh), idempotently.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# Caches a second run on the same machine finds: cargo's build output, the
# test kernels (tests/vm/kernel.sh). bpf-linker lives in ~/.cargo/bin.
SAFEGUARD_CACHE ?= $(HOME)/.cache/safeguard
export SAFEGUARD_CACHE
CARGO_TARGET_DIR ?= $(SAFEGUARD_CACHE)/target
export CARGO_TARGET_DIR

# `make test-vm KERNEL=6.1` runs one kernel.
KERNEL ?= 6.1 6.12
# A guard against a hung guest, per kernel: the whole suite takes about 10
# minutes under TCG on two cores, more on a busy machine.
VM_TIMEOUT ?= 1800
# Extra arguments for `make run`, e.g. ARGS='--mode block'.
ARGS ?=

DEBUG_BIN := $(CARGO_TARGET_DIR)/debug
RELEASE_BIN := $(CARGO_TARGET_DIR)/release

.PHONY: all setup setup-build setup-host build run test lint test-unit test-deploy test-host test-vm bench image clean-cache help

all: build

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)
	@echo "  other targets: test-unit test-host test-vm [KERNEL=6.1|6.12] lint bench image setup"

setup:
	@scripts/setup.sh all

setup-build:
	@scripts/setup.sh build

setup-host:
	@scripts/setup.sh host

build: setup-build
	cargo build --release --bin safeguard

run: build
	$(RELEASE_BIN)/safeguard run $(ARGS)

test: setup lint test-unit test-deploy test-host test-vm
	@echo "make test: all passed"

# The kernel programs are outside default-members: linted on their own
# target, with the cfg collector/build.rs builds them with.
EBPF_ARCH ?= $(shell uname -m)

lint: setup-build
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	RUSTC_BOOTSTRAP=1 RUSTFLAGS='--cfg=bpf_target_arch="$(EBPF_ARCH)"' \
		cargo clippy -p collector-ebpf --release --target bpfel-unknown-none \
		-Z build-std=core -- -D warnings

test-unit: setup-build
	cargo test --bins --lib
	cargo test -p semconv

# Every deploy and dashboard file, checked by its own tool.
test-deploy: setup-host
	cargo build --bin safeguard
	SAFEGUARD_BIN=$(DEBUG_BIN)/safeguard scripts/check-deploy.sh

# Host integration tests (the tracepoint tier on this kernel; needs root),
# and end to end with the real Collector (built once by scripts/collector.sh):
# the harness's own test, then the agent's; then through the Collector's
# shipped sidecar configuration into Prometheus, Jaeger and VictoriaLogs
# (built once by scripts/backends.sh). With SAFEGUARD_REQUIRE_OTELCOL=1 and
# SAFEGUARD_REQUIRE_BACKENDS=1 a test that cannot find them fails instead
# of skipping.
test-host: setup-host
	cargo test -p safeguard --test host
	otelcol=$$(scripts/collector.sh path); \
	export SAFEGUARD_OTELCOL=$$otelcol SAFEGUARD_REQUIRE_OTELCOL=1 && \
	cargo test -p safeguard-test-support && \
	cargo test -p safeguard --test otel && \
	export SAFEGUARD_PROMETHEUS=$$(scripts/backends.sh path prometheus) \
		SAFEGUARD_JAEGER=$$(scripts/backends.sh path jaeger) \
		SAFEGUARD_VICTORIALOGS=$$(scripts/backends.sh path victoria-logs) \
		SAFEGUARD_REQUIRE_BACKENDS=1 && \
	cargo test -p safeguard --test backends
	otelcol=$$(scripts/collector.sh path); \
	images=$$(scripts/image.sh $(DEBUG_BIN)/safeguard $$otelcol $(SAFEGUARD_CACHE)/images); \
	export SAFEGUARD_IMAGE_AGENT=$$(sed -n 1p <<<"$$images") \
		SAFEGUARD_IMAGE_OTELCOL=$$(sed -n 2p <<<"$$images") SAFEGUARD_REQUIRE_IMAGES=1 && \
	cargo test -p safeguard --test image

# The agent's and the Collector's container images (podman), from the
# release build, written as OCI archives to dist/ (see deploy/README.md).
image: setup-host build
	scripts/image.sh $(RELEASE_BIN)/safeguard $$(scripts/collector.sh path) dist

test-vm: setup
	cargo build --bin safeguard --bin safeguard-vm-tests
	@failed=0; for k in $(KERNEL); do \
		tests/vm/run.sh --kernel $$k --timeout $(VM_TIMEOUT) \
			--log $(SAFEGUARD_CACHE)/vm-$$k.log \
			--bin $(DEBUG_BIN)/safeguard --bin $(DEBUG_BIN)/safeguard-vm-tests \
			-- /bin/safeguard-vm-tests || failed=1; \
	done; exit $$failed

# One table of figures against baselines measured in the same run (see
# BENCHMARKS.md): hook overhead (VM and host), end to end into the Collector.
bench: setup
	scripts/bench.sh

clean-cache:
	rm -rf $(SAFEGUARD_CACHE)
