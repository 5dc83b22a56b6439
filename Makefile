# Fluo: drop-in replacement for the Kurento Media Server (Kurento Protocol over WebSocket).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CARGO ?= cargo
FLUO_ARGS ?=
WEB_ARGS ?=
# OpenCV's log: fatal lines only, as the server sets it for itself (fluo-server's
# init_logging), for the tests that run FaceOverlayFilter's facedetect in their own process
# (each one made writes three ERROR lines about cascades it does not use).
export OPENCV_LOG_LEVEL ?= FATAL

.PHONY: run build fmt-check layout clippy wasm-modules unit compat e2e package image package-test test bench-ping bench-sfu bench-fanout bench-media bench-boundary bench-workers bench-worker-feed storm soak deps-run deps-test deps-bench bench bench-smoke

deps-run:
	scripts/deps.sh run

deps-test:
	scripts/deps.sh test

deps-bench:
	scripts/deps.sh bench

# Build the release server and run it on ws://0.0.0.0:8888/kurento, with the demo pages on
# https://0.0.0.0:8443/ (self-signed certificate).
run: deps-run
	$(CARGO) build --release -p fluo-server
	web/run.sh --ws-uri ws://127.0.0.1:8888/kurento $(WEB_ARGS) & web=$$!; \
	trap 'kill $$web 2>/dev/null' EXIT INT TERM; \
	target/release/fluo $(FLUO_ARGS)

build:
	$(CARGO) build --workspace

fmt-check:
	$(CARGO) fmt --all --check

# File and function sizes (docs/architecture.md, "Layout rules, checked").
layout:
	python3 scripts/layout.py

# fluo-testkit without its `live` feature (what the fuzz targets link) is not linted here: alone
# it checks again the dependencies whose features unify differently without fluo-server (1 min
# 42 s under load), and fuzz-smoke builds it that way anyway, so a build error still fails
# make test. To lint it: cargo clippy -p fluo-testkit --no-default-features --all-targets.
clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p fluo-server --features test-elements --all-targets -- -D warnings

# The test suites below run with TMPDIR set to a fresh target/test-tmp/NAME and fail, naming
# them, when they leave a file or folder there (scripts/tmp-check.sh).
TMP_CHECK := scripts/tmp-check.sh

# The WebAssembly modules in the repository (docs/modules.md), built for wasm32 into
# target/wasm32-unknown-unknown/wasm-module/: the test module the unit tests load and
# PointerDetectorFilter, which compat's 20-pointerdetector loads.
WASM_MODULES := fluo-module-wasmtest fluo-module-pointerdetector
wasm-modules:
	$(CARGO) build --profile wasm-module --target wasm32-unknown-unknown $(addprefix -p ,$(WASM_MODULES))

# Unit and integration tests, including the property-based fuzzing of the request parser and
# dispatch (FLUO_FUZZ_CASES sets its case count). The Rust SDK's examples
# (crates/fluo-client/tests/live_examples.rs) run here against target/debug/fluo, which
# `cargo test --workspace --no-run` builds before any test runs. scripts/test-lanes.py runs
# TEST_JOBS test binaries at once (default 3; TEST_JOBS=1 is `cargo test --workspace`'s
# order): most of their time is waiting, and the tests with real-time video figures still run
# one at a time across binaries (fluo_testkit::live::serial, a lock across processes).
unit: wasm-modules
	$(TMP_CHECK) unit scripts/test-lanes.py
	$(TMP_CHECK) unit-test-elements $(CARGO) test -p fluo-server --features test-elements --test filter_probe --test modules

# Node compatibility suite (official kurento-client 7.3.0) against the debug server.
# COMPAT_JOBS test files run at once (default 3; COMPAT_JOBS=1: one at a time): each file has
# its own server on port 0, and most of their time is waiting (README.md, "How long make test
# takes").
compat: wasm-modules
	$(CARGO) build -p fluo-server
	$(TMP_CHECK) compat tests/compat/run.sh

# Browser end-to-end suite (headless Chromium + web/ demo app) against the debug server.
# E2E_JOBS test files run at once (default 2; each file has its own server, web app and
# Chromium); the files marked `// e2e: alone` (timing comparisons) run after them, one at a
# time (README.md, "How long make test takes").
e2e:
	$(CARGO) build -p fluo-server
	$(TMP_CHECK) e2e tests/e2e/run.sh

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the JSON-RPC dispatch, SDP offers and
# answers, RTP/RTCP/STUN/DTLS datagrams into the media core, element URIs and plain-RTP SDP:
# FUZZ_SECS per target (nightly when installed, else stable with RUSTC_BOOTSTRAP=1). Fails on a
# crash or a target that ran 0 inputs; when it cannot run at all (no cargo-fuzz, no toolchain
# builds) it fails under CI=true and otherwise says what was not checked. fuzz-smoke runs each
# target for 15 s.
.PHONY: fuzz fuzz-smoke
FUZZ_SECS ?= 1800
fuzz:
	scripts/fuzz.sh $(FUZZ_SECS)

fuzz-smoke:
	$(TMP_CHECK) fuzz-smoke scripts/fuzz.sh 15

# GStreamerFilter sweep (outside make test, about 10 minutes): every writable non-string property
# of every factory on the default list, at its minimum, maximum and edge values, in a child
# gst-launch-1.0 (10 s timeout, 2 GiB address space); lists what crashes, hangs, blows up memory
# or dumps to stdout, and fails if Fluo's default policy still accepts one of those commands.
# Findings in docs/gst-filter-sweep.md. SWEEP_ARGS: factory names to sweep only those.
.PHONY: gst-filter-sweep
SWEEP_ARGS ?=
gst-filter-sweep:
	nice -n 19 $(CARGO) run -p fluo-gst --example gst_filter_sweep -- $(SWEEP_ARGS)

# The Debian package (docs/operations.md, "The Debian package"): the release binary and
# PointerDetectorFilter's module into target/package/fluo_VERSION_ARCH.deb, and the container
# image's build context (the .deb, the Dockerfile, its entry point) into target/package/container/.
# PACKAGE_PROFILE=debug packages the debug build instead (make test does: the package is the same
# but for the binary's optimisation, and the release build would add about 9 minutes).
PACKAGE_PROFILE ?= release
package:
	$(CARGO) build --profile $(if $(filter debug,$(PACKAGE_PROFILE)),dev,$(PACKAGE_PROFILE)) -p fluo-server
	$(CARGO) build --profile wasm-module --target wasm32-unknown-unknown -p fluo-module-pointerdetector
	FLUO_BIN=target/$(PACKAGE_PROFILE)/fluo scripts/package.sh

# The container image (Dockerfile: FROM debian:12, the .deb installed), as localhost/fluo:latest.
image: package
	podman build --format docker -t localhost/fluo:latest target/package/container

# The .deb installed, its unit checked, the installed server started as the unit starts it and
# driven with kurento-client, then removed and purged (tests/package/deb-test.sh); the container
# image built on a Debian 12 made with mmdebstrap (tests/package/base-rootfs.sh, started in the
# background at the beginning of make test) with podman, run and driven the same way
# (tests/package/container-test.sh), and the image booted with systemd running fluo.service.
# Root; under CI=true a step that cannot run fails. The base image's 0.9 GB tar is removed once
# imported (and here again, should the container test end before).
package-test: package
	$(TMP_CHECK) package-deb tests/package/deb-test.sh
	status=0; $(TMP_CHECK) package-container tests/package/container-test.sh || status=$$?; \
	tests/package/base-rootfs.sh clean; exit $$status

# Full check, fail fast, in this order. The container test's base image downloads in the
# background meanwhile, niced (package-test waits for it; without root or mmdebstrap it says
# SKIPPED and make test goes on, but fails under CI=true). Each step runs through
# scripts/step-time.sh, which records its wall and CPU seconds (target/make-test-times.tsv):
# the table is printed at the end, and when a step fails, for the steps that ran.
STEP = scripts/step-time.sh run
test:
	@scripts/step-time.sh start
	$(STEP) deps-test $(MAKE) --no-print-directory deps-test
	$(STEP) base-rootfs-start tests/package/base-rootfs.sh start $$PPID
	$(STEP) fmt-check $(MAKE) --no-print-directory fmt-check
	$(STEP) layout $(MAKE) --no-print-directory layout
	$(STEP) clippy $(MAKE) --no-print-directory clippy
	$(STEP) unit $(MAKE) --no-print-directory unit
	$(STEP) fuzz-smoke $(MAKE) --no-print-directory fuzz-smoke
	$(STEP) compat $(MAKE) --no-print-directory compat
	$(STEP) e2e $(MAKE) --no-print-directory e2e
	$(STEP) bench-smoke $(MAKE) --no-print-directory bench-smoke
	$(STEP) cluster-test $(MAKE) --no-print-directory cluster-test
	$(STEP) package-test $(MAKE) --no-print-directory package-test PACKAGE_PROFILE=debug
	@scripts/step-time.sh report

# Issue 22's cluster test (docs/cluster.md, "make cluster-test"; root): three debug nodes in
# network namespaces on a bridge with a real redis-server, tc netem between them
# (CLUSTER_NETEM); a broadcast from node 1 to viewers on every node (fluo-bench cluster,
# CLUSTER_BROADCAST_VIEWERS) during which Redis is killed and started again
# (CLUSTER_REDIS_DOWN_SECS), then node 1 draining; the official kurento-client through node 1
# places pipelines on nodes 2 and 3 (checked in Redis), a subset of the compat suite runs
# through node 1 (CLUSTER_COMPAT), then node 3 gets kill -9 while a client holds a pipeline
# there and an application re-creates its call (CLUSTER_KILL_RUNS); last, kurento-client
# resumes its session through another entry (CLUSTER_RESUME). Part of make test (about 4-5
# minutes). A missing tool or no root: SKIPPED, a failure under CI=true.
# FLUO_BIN=PATH runs that binary (e.g. a release build) instead of building target/debug/fluo,
# BENCH_BIN=PATH that load tool instead of target/debug/fluo-bench.
.PHONY: cluster-test
cluster-test:
	$(if $(FLUO_BIN),,$(CARGO) build -p fluo-server)
	$(if $(BENCH_BIN),,$(CARGO) build -p fluo-bench)
	FLUO_BIN=$(or $(FLUO_BIN),target/debug/fluo) BENCH_BIN=$(or $(BENCH_BIN),target/debug/fluo-bench) scripts/cluster-test.sh

# Fluo against Janus side by side (bench/, docs/perf.md): one WebRTC publisher, N viewers, the
# server pinned to CPU 0 and the load tool to CPU 1 in a private network namespace (root).
# Results in bench/results/<date>-<commit>.json and .md, plots in docs/img/. BENCH_ARGS adds flags,
# e.g. BENCH_ARGS="--viewers 100 --reps 1", and then runs only that. Without BENCH_ARGS two more
# runs follow, issue 20's figures (docs/perf.md): <date>-<commit>-bwe (--servers fluo,fluo-bwe
# --viewers 100,200: CPU per packet with the estimate on for every viewer, `fluo-bwe`, beside the
# default `auto`, `fluo`, which estimates none of this plain publisher's viewers) and
# <date>-<commit>-simulcast500 (--servers fluo-bwe --viewers 500 --limit 0.33:300 --simulcast
# --warmup 15: a third of the viewers behind 300 kbit/s links, a q/h/f simulcast publisher: loss
# and fps per group).
, := ,
BENCH_STAMP = $(shell date -u +%F)-$(shell git rev-parse --short=7 HEAD)
BENCH_ARGS ?=
bench: deps-bench
	$(CARGO) build --release -p fluo-server -p fluo-bench
	target/release/fluo-bench --fluo-bin target/release/fluo --plots docs/img $(BENCH_ARGS)
	$(if $(BENCH_ARGS),,target/release/fluo-bench --fluo-bin target/release/fluo --servers fluo$(,)fluo-bwe --viewers 100$(,)200 --out bench/results/$(BENCH_STAMP)-bwe.json)
	$(if $(BENCH_ARGS),,target/release/fluo-bench --fluo-bin target/release/fluo --servers fluo-bwe --viewers 500 --limit 0.33:300 --simulcast --warmup 15 --out bench/results/$(BENCH_STAMP)-simulcast500.json)

# The same for 10 viewers and a few seconds, Fluo and the four Janus rows, thin and full viewers,
# 10 more joining while they watch, 2 % of the video dropped at the viewers so that their NACKs
# must repair it; debug builds: fails when a viewer gets no media, loses packets after repair, a
# figure is missing, a row lacks its repetition, TWCC is not what the row's name says, a join
# opened a signalling connection, a thin viewer fails to decrypt or to exchange reports, or
# Fluo's getStats shows no round trip, NACK or PLI from the viewers; and fluo-bwe (--bwe on):
# fails when thin viewers send TWCC feedback without TWCC negotiated or none with it, or when Fluo's
# getStats of a fluo-bwe viewer has no bandwidth estimate. Without Janus (or root for
# its network namespace) it runs Fluo alone and says so; under CI=true that is a failure.
bench-smoke:
	$(CARGO) build -p fluo-server -p fluo-bench
	$(TMP_CHECK) bench-smoke target/debug/fluo-bench --smoke --fluo-bin target/debug/fluo --fluo-base-bin target/debug/fluo

# Request throughput of the Kurento endpoint (pings/s over 1 and 100 connections).
bench-ping:
	$(CARGO) run --release -p fluo-server --bin fluo-pingbench

# The router's forwarding path (criterion): time per forwarded packet at 10, 100, 1000 sinks.
bench-sfu:
	$(CARGO) bench -p fluo-sfu --bench forward

# Full forwarding path (media core + str0m SRTP): time per forwarded packet at 10/100/1000.
bench-fanout:
	$(CARGO) bench -p fluo-testkit --bench fanout -- 10 100 1000

# GStreamer media plane: transcoding CPU against gst-launch-1.0, one player to 1/10/100 viewers,
# a Composite of 4 and 9 WebRTC participants against the same mix in gst-launch-1.0, the
# filters (FaceOverlayFilter, ChromaFilter; PassThrough and GStreamerFilter as baselines) at
# 640x360 30 fps against the same work in gst-launch-1.0, and a WebAssembly filter
# (PointerDetectorFilter) against the same filter compiled in.
# BENCH_MEDIA_ARGS: parts to run (transcode, fanout, composite, filters, wasm; "composite
# quick" / "filters quick": one short round of each, nothing written); none runs them all,
# then bench-boundary. The Composite and Filters parts and bench-boundary run the release
# server; the filters and wasm parts write bench/results/<date>-<commit>-{filters,wasm}.*.
# The wasm part also loads PointerDetectorFilter built at opt-level 3 (profile
# wasm-module-o3), beside the module as shipped (wasm-module: opt-level "s").
BENCH_MEDIA_ARGS ?=
bench-media: wasm-modules
	$(CARGO) build --release -p fluo-server
	$(CARGO) build --profile wasm-module-o3 --target wasm32-unknown-unknown -p fluo-module-pointerdetector
	$(CARGO) bench -p fluo-testkit --bench media -- $(BENCH_MEDIA_ARGS)
	if [ -z "$(BENCH_MEDIA_ARGS)" ]; then $(MAKE) --no-print-directory bench-boundary; fi

# The media worker boundary's cost (docs/perf.md, "The worker boundary"): a player to 10
# viewers and one transcoded stream on the release server with its workers and with
# --workers 0, alternated, BOUNDARY_RUNS runs each (default 3) of BOUNDARY_SECS (default 15).
bench-boundary:
	$(CARGO) build --release -p fluo-server
	$(CARGO) bench -p fluo-testkit --bench boundary

# Worker processes (crates/fluo-worker, docs/workers.md): start-up time and memory of a worker,
# latency and CPU per packet across the process boundary against an in-process channel.
bench-workers:
	$(CARGO) bench -p fluo-worker --bench transport

# Media datagrams to the workers and CPU per second: a player, and a WebRTC publisher, each
# recorded by a RecorderEndpoint in a worker (docs/workers.md, "Batching per pass").
bench-worker-feed:
	$(CARGO) bench -p fluo-testkit --bench worker_feed

# Negotiation storm: 1000 WebRtcEndpoints over 100 WebSocket connections, figures printed.
storm:
	$(CARGO) bench -p fluo-testkit --bench storm -- 1000 100

# Churn soak: 10 000 cycles of two WebRtcEndpoints with real UDP peers and a WebM recorder
# (in one of the server's two media workers), three teardown styles, LANES cycles at once; RSS,
# descriptors, threads, UDP sockets, GStreamer objects (the server's process and its workers
# added up), pipelines and sessions before and after, CPU once all have left.
CYCLES ?= 10000
LANES ?= 8
soak:
	$(CARGO) bench -p fluo-testkit --bench soak -- $(CYCLES) $(LANES)
