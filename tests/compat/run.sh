#!/usr/bin/env bash
# Run the Node compatibility suite (kurento-client 7.3.0) against the Fluo debug binary.
#   tests/compat/run.sh [test files...]      (default: all of test/)
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
if [ "$#" -gt 0 ]; then
  exec node --test --test-concurrency=1 "$@"
fi
exec npm test
