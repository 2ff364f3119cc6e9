# Capy Webhooks — the two commands:
#   make run   set up and run the whole system locally (moto + capy serve on 127.0.0.1:3000)
#   make test  set up and pass every test (starts and stops its own moto on a free port)

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
MOTO_PORT ?= 4566
ADDR ?= 127.0.0.1:3000
DEV_ORG ?= org_dev

export AWS_ACCESS_KEY_ID ?= test
export AWS_SECRET_ACCESS_KEY ?= test
export AWS_REGION ?= us-east-1

.PHONY: run test venv build lint check-template clean portal browser-deps portal-bench

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

build:
	cargo build -p capy

# Starts moto on 127.0.0.1:$(MOTO_PORT) unless something already listens there, then serves.
run: venv build portal
	@mkdir -p .local
	@if ! (exec 3<>/dev/tcp/127.0.0.1/$(MOTO_PORT)) 2>/dev/null; then \
		echo "starting moto_server on 127.0.0.1:$(MOTO_PORT) (log: .local/moto.log)"; \
		$(VENV)/bin/moto_server -H 127.0.0.1 -p $(MOTO_PORT) > .local/moto.log 2>&1 & \
		for i in $$(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$(MOTO_PORT)) 2>/dev/null && break; sleep 0.2; done; \
	fi
	AWS_ENDPOINT_URL=http://127.0.0.1:$(MOTO_PORT) ./target/debug/capy serve --addr $(ADDR) --dev-key-org $(DEV_ORG)

test: venv portal browser-deps
	cargo build --workspace --bins
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo test --workspace
	$(MAKE) check-template
	$(MAKE) fuzz

check-template: venv
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/sam validate --lint --region us-east-1

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf target .local .aws-sam

# --- Packaging (issue 4) ---
# Lambda artifacts: cargo-lambda + zig from PyPI (requirements-lambda.txt, kept out of the
# test requirements so CI stays fast), the arm64 std from rustup, then one
# `cargo lambda build --release --arm64` of every binary of capy-functions
# (target/lambda/<function>/bootstrap). `make sam-build` runs SAM's own build of the same.
# Both build the portal first: the `portal` function embeds portal/dist (functions/build.rs).
.PHONY: lambda-tools lambda sam-build sizes host-release runtime-test runtime-test-arm64 coldstart coldstart-phases

$(VENV)/.lambda-installed: requirements-lambda.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -r requirements-lambda.txt
	touch $@

lambda-tools: $(VENV)/.lambda-installed
	rustup target add aarch64-unknown-linux-gnu

lambda: lambda-tools portal
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --arm64 -p capy-functions

sam-build: lambda-tools portal
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash -c 'time $(VENV)/bin/sam build'

# Stripped and zipped size of every artifact (target/lambda, or .aws-sam/build after sam build).
sizes:
	bash scripts/artifact-sizes.sh

# Host (x86_64) release builds, same profile as the artifacts: every function and the bare
# lambda_runtime hello-world (functions/examples/hello.rs, never deployed).
host-release:
	cargo build --release -p capy-functions --bins --example hello --example hello-current-thread

# The Runtime API suite (tests/tests/runtime_api.rs) against the release binaries. `make test`
# runs the same suite against the debug binaries (a release LTO build of the seven binaries
# would add minutes to CI for what the debug build already shows).
runtime-test: venv host-release
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CAPY_FUNCTIONS_DIR=$(CURDIR)/target/release \
		cargo test -p capy-tests --test runtime_api -- --nocapture

# The same suite against the arm64 artifacts `make lambda` builds for deployment, run under
# qemu user-mode emulation (Debian: apt-get install qemu-user libc6-arm64-cross).
QEMU_LD_PREFIX ?= /usr/aarch64-linux-gnu
runtime-test-arm64: venv lambda
	@command -v qemu-aarch64 >/dev/null || { echo "needs qemu-aarch64: apt-get install qemu-user libc6-arm64-cross"; exit 1; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CAPY_FUNCTIONS_DIR=$(CURDIR)/target/lambda \
		CAPY_FUNCTIONS_RUNNER=qemu-aarch64 QEMU_LD_PREFIX=$(QEMU_LD_PREFIX) \
		cargo test -p capy-tests --test runtime_api -- --nocapture

# Cold start: exec -> first Runtime API `next`, median of COLDSTART_RUNS, beside the
# hello-world (tests/src/bin/coldstart.rs; the timer itself is a debug build, it only
# waits on a socket), then the arm64 artifact sizes when `make lambda`/`sam-build` ran.
COLDSTART_RUNS ?= 25
coldstart: host-release
	cargo run -q -p capy-tests --bin coldstart -- --runs $(COLDSTART_RUNS)
	@if compgen -G "target/lambda/*/bootstrap" >/dev/null || compgen -G ".aws-sam/build/*/bootstrap" >/dev/null; then \
		echo; echo "arm64 artifacts:"; bash scripts/artifact-sizes.sh; fi

# Where init time goes: each step before the first `next` (runtime, tracing, settings, SDK
# config, each SDK client, sender), timed in fresh processes, median of 31.
coldstart-phases:
	cargo build --release -p capy-functions --example init-phases
	cargo run -q -p capy-tests --bin coldstart -- --phases --runs 31

# --- Benchmarks (issue 3) ---
# Numbers, not tests. `make bench`: the deliver consumer (in-memory stores and queue) sending
# real signed requests to a loopback receiver in the same process: deliveries/s and CPU
# µs/delivery (receiver included), then a batch of 10 to a receiver that takes 200 ms.
# `make bench-aws`: for (1 KB, 1 endpoint), (1 KB, 10), (10 KB, 10), (10 KB, 1,000): AWS
# requests per delivery (SDK interceptor), DynamoDB units from item sizes, $ per million
# deliveries beside the issue 10 targets, publish calls and latency ratio, time to enqueue
# 1,000 and 10,000 deliveries, the per-endpoint partition ceiling; against a moto_server it
# starts on a free port. `make bench-duplicates`: duplicate sends per DUPLICATES fault-free
# deliveries through the real `capy serve` (4 pollers) + moto. Pass options through
# BENCH_ARGS / BENCH_AWS_ARGS (e.g. BENCH_ARGS="--concurrency 32 --logs"; see --help).
.PHONY: bench bench-aws bench-duplicates
BENCH_ARGS ?=
BENCH_AWS_ARGS ?=
DUPLICATES ?= 10000

bench:
	cargo run --release -p capy-bench --bin deliver-bench -- $(BENCH_ARGS)

bench-aws: venv
	cargo run --release -p capy-bench --bin aws-bench -- --moto-server $(CURDIR)/$(VENV)/bin/moto_server $(BENCH_AWS_ARGS)

bench-duplicates: venv build
	cargo run --release -p capy-bench --bin aws-bench -- --moto-server $(CURDIR)/$(VENV)/bin/moto_server \
		--capy $(CURDIR)/target/debug/capy --duplicates $(DUPLICATES) $(BENCH_AWS_ARGS)

# --- Fuzzing (issue 5) ---
# schemathesis against openapi.yaml and a real `capy serve` (moto on free ports): once with a
# minted API key (organization_id pinned to its org), once without credentials; >= 1,000
# requests, checks not_a_server_error, status_code_conformance, content_type_conformance and
# response_schema_conformance; prints the request counts. FUZZ_MAX_EXAMPLES scales it.
.PHONY: fuzz
fuzz: venv
	cargo build -q -p capy --bin capy
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CAPY_BIN=$(CURDIR)/target/debug/capy $(PY) scripts/fuzz-api.py

# --- Portal (issue 12) ---
# The customer portal (portal/, Preact + Vite): npm ci when the lockfile changed, its unit
# checks, the build into portal/dist (served by `capy serve` at /portal/), and the first-load
# size against its 200 KB budget. `browser-deps` installs Debian's Chromium for the browser
# suite (tests/tests/portal.rs) when it is missing; Playwright never downloads its own.
portal/node_modules/.capy-installed: portal/package-lock.json
	cd portal && npm ci --no-audit --no-fund
	touch $@

portal: portal/node_modules/.capy-installed
	cd portal && npm test --silent && npm run --silent build && npm run --silent size

CHROMIUM ?= /usr/bin/chromium
browser-deps:
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "installing Debian's chromium"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; \
	fi

# First-load bytes (gzipped) and time to the endpoints list rendered, median of 10 cold
# loads, on a stack it starts (moto, capy serve, a receiver; 10 endpoints).
portal-bench: venv portal browser-deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo test -p capy-tests --test portal -- --ignored --nocapture portal_bench
