#!/usr/bin/env bash
# Run the Node compatibility suite (kurento-client 7.3.0) against the Fluo debug binary.
#   tests/compat/run.sh [test files...]      (default: all of test/)
# COMPAT_JOBS: how many test files run at once (default 3). Each file starts its own server on
# port 0 with its own temporary folders, so files do not share state; the tests of one file
# run one after the other. Most of a file's time is waiting (media played and recorded in
# real time, ffmpeg), so three files at once on 2 cores take about half the wall time of one
# at a time (README.md, "How long make test takes"). COMPAT_JOBS=1: one file at a time.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export FLUO_BIN="${FLUO_BIN:-$ROOT/target/debug/fluo}"
if [ ! -x "$FLUO_BIN" ]; then
  echo "compat: server binary not found at $FLUO_BIN (run: cargo build -p fluo-server)" >&2
  exit 1
fi
cd "$HERE"
if [ ! -d node_modules ]; then
  npm install --ignore-scripts --no-audit --no-fund
fi
# The whole output goes to target/test-logs/compat.log too; when the run fails, its failed
# subtests are printed again at the end (a long log's tail is what CI shows).
mkdir -p "$ROOT/target/test-logs"
log="$ROOT/target/test-logs/compat.log"
if [ "$#" -eq 0 ]; then set -- test/; fi
jobs="${COMPAT_JOBS:-3}"
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "compat: COMPAT_JOBS must be a positive number, not '$jobs'" >&2
  exit 2
fi
status=0
node --test --test-concurrency="$jobs" "$@" 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  "$ROOT/scripts/tap-failures.sh" compat "$log"
fi
exit "$status"
