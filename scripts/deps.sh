#!/usr/bin/env bash
# Install what Fluo needs, and only what is missing.
#   scripts/deps.sh run   -> build + runtime dependencies (GStreamer)
#   scripts/deps.sh test  -> the above + test tools (Node.js, npm, Chromium, ffmpeg, curl, coturn,
#                            nft, Janus for the benchmark's smoke run, g++ for libFuzzer,
#                            qrencode for the ZBarFilter test's clip; redis-server for the
#                            cluster tests (they spawn their own on a unix socket, and `run`
#                            does not need Redis: a system service the package started when
#                            this script installed it is stopped and disabled); dpkg-dev, podman,
#                            runc, mmdebstrap and procps for make package-test),
#                            rustfmt/clippy, cargo-fuzz and the npm modules of tests/compat
#                            (whose kurento-client modules also hold the kmd files that
#                            crates/fluo-core/tests/kmd_coverage.rs reads). Under CI=true a
#                            test that finds something missing fails, so this installs all.
#   scripts/deps.sh bench -> build + runtime dependencies, Janus, iproute2 (make bench)
set -euo pipefail

MODE="${1:-run}"
case "$MODE" in
  run | test | bench) ;;
  *)
    echo "usage: $0 run|test|bench" >&2
    exit 2
    ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

BUILD_PKGS=(pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev)
# What the fluo binary needs at run time (packaging/deb/depends, also the .deb's Depends), and
# gst-launch-1.0 and openssl (the demo app's certificate) for `make run`.
mapfile -t SERVER_PKGS < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$ROOT/packaging/deb/depends")
RUN_PKGS=("${SERVER_PKGS[@]}" gstreamer1.0-tools openssl)
# Test tools: "package:command". A tool whose command already exists (e.g. Node.js from
# another source, which bundles npm) is not reinstalled from Debian.
TEST_TOOLS=(nodejs:node npm:npm chromium:chromium ffmpeg:ffmpeg coturn:turnserver iproute2:ip nftables:nft
  janus:janus util-linux:taskset graphviz:dot g++:g++ qrencode:qrencode curl:curl
  dpkg-dev:dpkg-shlibdeps binutils:objcopy systemd:systemd-analyze podman:podman runc:runc mmdebstrap:mmdebstrap
  procps:pgrep redis-server:redis-server)
# The benchmark's peer (Janus 1.1.2 from Debian), its namespace (ip) and CPU pinning (taskset).
BENCH_TOOLS=(janus:janus iproute2:ip util-linux:taskset)
# Test packages: the RTSP server the player tests play from (Debian's python3 with GI).
TEST_PKGS=(python3-gi gir1.2-gst-rtsp-server-1.0)

APT_UPDATED=0
apt_install() {
  local as_root=()
  if [ "$(id -u)" -ne 0 ]; then as_root=(sudo); fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    "${as_root[@]}" apt-get update -qq
    APT_UPDATED=1
  fi
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

pkg_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

ensure_pkgs() {
  local label="$1"
  shift
  local missing=() p
  for p in "$@"; do
    pkg_installed "$p" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    apt_install "${missing[@]}"
  else
    echo "deps: ok ($label packages)"
  fi
}

ensure_tools() {
  local missing=() entry pkg cmd
  for entry in "$@"; do
    pkg="${entry%%:*}"
    cmd="${entry##*:}"
    command -v "$cmd" >/dev/null 2>&1 || pkg_installed "$pkg" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    apt_install "${missing[@]}"
  else
    echo "deps: ok (tools)"
  fi
}

# redis-server's package starts a system Redis on 127.0.0.1:6379 where it can (systemd, or
# invoke-rc.d without a policy-rc.d saying no). The tests spawn their own, and a daemon is not
# wanted on a CI machine: when this run installed the package, its service is stopped and
# disabled (errors ignored: there may be none). A Redis installed before is left alone.
quiet_redis_service() {
  local as_root=()
  if [ "$(id -u)" -ne 0 ]; then as_root=(sudo); fi
  if [ -d /run/systemd/system ]; then
    "${as_root[@]}" systemctl disable --now redis-server >/dev/null 2>&1 || true
  else
    "${as_root[@]}" service redis-server stop >/dev/null 2>&1 || true
    local pidfile=/run/redis/redis-server.pid pid=""
    if [ -s "$pidfile" ]; then pid="$(cat "$pidfile" 2>/dev/null || true)"; fi
    if [ -n "$pid" ]; then "${as_root[@]}" kill "$pid" >/dev/null 2>&1 || true; fi
    "${as_root[@]}" update-rc.d redis-server disable >/dev/null 2>&1 || true
  fi
  echo "deps: redis-server's system service stopped and disabled (the tests spawn their own)"
}

ensure_rust_component() {
  local sub="$1" comp="$2"
  if cargo "$sub" --version >/dev/null 2>&1; then
    echo "deps: ok ($comp)"
  else
    echo "deps: installing $comp"
    rustup component add "$comp"
  fi
}

# The WebAssembly target the test modules and PointerDetectorFilter are built for (make
# wasm-modules).
ensure_rust_target() {
  local target="$1"
  if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "deps: ok ($target)"
  else
    echo "deps: installing $target"
    rustup target add "$target"
  fi
}

# cargo-fuzz for `make fuzz-smoke` (scripts/fuzz.sh builds with stable and RUSTC_BOOTSTRAP=1
# when there is no nightly).
ensure_cargo_fuzz() {
  if cargo fuzz --version >/dev/null 2>&1; then
    echo "deps: ok (cargo-fuzz)"
  else
    echo "deps: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
  fi
}

ensure_npm_modules() {
  local rel="$1"
  local dir="$ROOT/$rel"
  local stamp="$dir/node_modules/.package-lock.json"
  local need=0
  if [ ! -d "$dir/node_modules" ] || [ ! -f "$stamp" ]; then
    need=1
  elif [ "$dir/package.json" -nt "$stamp" ]; then
    need=1
  elif [ -f "$dir/package-lock.json" ] && [ "$dir/package-lock.json" -nt "$stamp" ]; then
    need=1
  fi
  if [ "$need" -eq 1 ]; then
    echo "deps: installing npm modules in $rel"
    (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund)
    # npm leaves the hidden lockfile untouched when nothing changed: mark it fresh.
    touch "$stamp"
  else
    echo "deps: ok (npm modules in $rel)"
  fi
}

ensure_pkgs build "${BUILD_PKGS[@]}"
ensure_pkgs run "${RUN_PKGS[@]}"
# make run serves the demo pages too, so both modes need Node.js and the web app's modules.
ensure_tools nodejs:node npm:npm
# The player demo makes its sample clips with ffmpeg on first use.
ensure_tools ffmpeg:ffmpeg
ensure_npm_modules web
if [ "$MODE" = bench ]; then
  ensure_tools "${BENCH_TOOLS[@]}"
fi
if [ "$MODE" = test ]; then
  had_redis=0
  if pkg_installed redis-server; then had_redis=1; fi
  ensure_tools "${TEST_TOOLS[@]}"
  if [ "$had_redis" -eq 0 ] && pkg_installed redis-server; then quiet_redis_service; fi
  ensure_pkgs test "${TEST_PKGS[@]}"
  ensure_rust_component fmt rustfmt
  ensure_rust_component clippy clippy
  ensure_rust_target wasm32-unknown-unknown
  ensure_cargo_fuzz
  ensure_npm_modules tests/compat
  ensure_npm_modules tests/e2e
fi
