#!/usr/bin/env bash
# The container test's Debian 12 base image, made with mmdebstrap (Docker Hub is not reachable
# from the CI machines; Debian's mirror is): minbase plus what the .deb depends on
# (packaging/deb/depends) and what the Dockerfile adds, as a tar for `podman import`.
# Downloading and unpacking takes minutes, mostly waiting on the network, so make test starts
# it in the background at its beginning and package-test waits for it:
#   tests/package/base-rootfs.sh start [PID] -> starts the build in the background, returns at
#                                   once; when process PID (make test's make; default: the
#                                   caller) ends before `wait` took the tar, the build stops
#                                   and removes everything (make test failed earlier)
#   tests/package/base-rootfs.sh wait  -> waits for it (starting it if none was started);
#                                   prints the tar's path; fails, with the build's log, if it
#                                   failed or took more than BASE_ROOTFS_TIMEOUT
#   tests/package/base-rootfs.sh clean -> stops a running build, removes everything
# Everything is in target/package-base/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="$ROOT/target/package-base"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# mmdebstrap's own limit (seconds): a stalled mirror ends the build, not the test run. It runs
# niced, so that make test's compilation, which it overlaps, goes first; make test needs the
# tar some 35 minutes after its start. Here (2 cores shared with other builds): unniced 193 to
# 278 s; nice 10 (about a tenth of a core against a busy process) 398 s at a load of 4 to 8;
# nice 19 (about 1.5 %) 660 to 1354 s, and once, at a load of 8 to 9, not done after 23
# minutes (killed by this limit, then 30 minutes). Hence nice 10 and 40 minutes.
TIMEOUT="${BASE_ROOTFS_TIMEOUT:-2400}"
NICE="${BASE_ROOTFS_NICE:-10}"

build() {
  local include
  include="$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$ROOT/packaging/deb/depends" | paste -sd,)"
  include="$include,adduser,ca-certificates,curl"
  local t0=$SECONDS
  # mmdebstrap resolves dependencies with apt (debootstrap's resolver stops at alternatives
  # such as dbus-session-bus, which GStreamer's packages pull in) and writes the tar itself.
  # The three suites of the debian:12 image; apt's lists and package cache are left out. dpkg
  # without fsync (a throwaway tree: with it, unpacking took minutes on a busy disk) and, as in
  # debian:12-slim, without manual pages, documentation and translations (less to unpack, and
  # man-db's trigger has nothing to index).
  mkdir -p "$DIR/tmp"
  local slim=(--dpkgopt=force-unsafe-io '--dpkgopt=path-exclude=/usr/share/man/*'
    '--dpkgopt=path-exclude=/usr/share/info/*' '--dpkgopt=path-exclude=/usr/share/locale/*'
    '--dpkgopt=path-exclude=/usr/share/doc/*' '--dpkgopt=path-include=/usr/share/doc/*/copyright')
  TMPDIR="$DIR/tmp" timeout --kill-after=10 "$TIMEOUT" \
    nice -n "$NICE" mmdebstrap --mode=root --format=tar --variant=minbase "${slim[@]}" \
    --include="$include" bookworm "$DIR/base.tar.partial" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
    "deb $SECURITY bookworm-security main"
  mv "$DIR/base.tar.partial" "$DIR/base.tar"
  rm -rf "$DIR/tmp"
  echo "base-rootfs: built in $((SECONDS - t0)) s: $(du -h "$DIR/base.tar" | cut -f1)"
}

running() {
  [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null
}

unmount_all() {
  # A killed mmdebstrap may leave its chroot's mounts (proc, sys, dev) in its temporary folder.
  grep -o " $DIR/[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

# Sends SIGTERM to a process and all of its descendants, deepest first.
kill_tree() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    kill_tree "$child"
  done
  kill -TERM "$1" 2>/dev/null || true
}

clean() {
  if running; then
    kill_tree "$(cat "$DIR/pid")"
    for _ in $(seq 50); do running || break; sleep 0.2; done
    kill -KILL -- "-$(cat "$DIR/pid")" 2>/dev/null || true
  fi
  unmount_all
  rm -rf "$DIR"
}

# The background job: builds, writes the status, then stays until `wait` claims the tar. When
# OWNER ends first, it stops the build and removes everything.
supervise() {
  local owner="$1" build_pid
  (
    if "$ROOT/tests/package/base-rootfs.sh" build >"$DIR/log" 2>&1; then
      echo ok >"$DIR/status.partial"
    else
      echo "failed (status $?)" >"$DIR/status.partial"
    fi
    mv "$DIR/status.partial" "$DIR/status"
  ) &
  build_pid=$!
  while [ ! -f "$DIR/claimed" ]; do
    if ! kill -0 "$owner" 2>/dev/null; then
      kill_tree "$build_pid"
      sleep 3
      unmount_all
      rm -rf "$DIR"
      exit 0
    fi
    sleep 1
  done
}

start() {
  local owner="${1:-$PPID}" why=
  if [ "$(id -u)" -ne 0 ]; then
    why="it needs root"
  elif ! command -v mmdebstrap >/dev/null; then
    why="mmdebstrap is missing (scripts/deps.sh test installs it)"
  fi
  if [ -n "$why" ]; then
    # make test goes on: the container test, at its turn, skips (or fails under CI=true).
    if [ "${CI:-}" = true ]; then
      echo "base-rootfs: cannot build the container test's base image: $why" >&2
      exit 1
    fi
    echo "SKIPPED: the container test's base image is not built: $why" >&2
    exit 0
  fi
  clean
  mkdir -p "$DIR"
  # Its own session and process group, so that `clean` stops all of it.
  setsid "$ROOT/tests/package/base-rootfs.sh" supervise "$owner" </dev/null >/dev/null 2>&1 &
  echo $! >"$DIR/pid"
  echo "base-rootfs: building the container test's base image in the background (log: $DIR/log)" >&2
}

wait_done() {
  if [ ! -f "$DIR/pid" ]; then
    start $$
  fi
  local waited=0
  # The build ends by itself within TIMEOUT plus the tar; a status that never comes means the
  # build was killed from outside.
  while [ ! -f "$DIR/status" ]; do
    if ! running; then
      echo "base-rootfs: the build stopped without a status (its log: $(tail -n 30 "$DIR/log" 2>/dev/null))" >&2
      exit 1
    fi
    if [ "$waited" -ge $((TIMEOUT + 300)) ]; then
      echo "base-rootfs: no result after ${waited} s; its log:" >&2
      tail -n 30 "$DIR/log" >&2 || true
      clean
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  touch "$DIR/claimed"
  if [ "$(cat "$DIR/status")" != ok ]; then
    echo "base-rootfs: the build $(cat "$DIR/status"); its log:" >&2
    tail -n 30 "$DIR/log" >&2 || true
    exit 1
  fi
  echo "base-rootfs: waited ${waited} s for it; $(tail -n 1 "$DIR/log")" >&2
  echo "$DIR/base.tar"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  supervise) supervise "$2" ;;
  wait) wait_done ;;
  clean) clean ;;
  build) build ;;
  *)
    echo "usage: $0 start|wait|clean" >&2
    exit 2
    ;;
esac
