#!/usr/bin/env bash
# End-to-end suite: headless Chromium drives the web/ demo app against the Fluo debug binary.
#   tests/e2e/run.sh [test files...]      (default: all of test/)
# Environment: FLUO_BIN, CHROMIUM_BIN, E2E_MEDIA_WS_URI, E2E_KEEP, RUST_LOG (see lib/env.js);
# E2E_JOBS: how many test files run at once (default 2). Each file starts its own Fluo, web
# app and Chromium (ports 0, its own temporary folder), so files do not share state and the
# tests of one file run one after the other; the files marked `// e2e: alone` (timing
# comparisons) run after the others, one at a time (README.md, "How long make test takes").
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export FLUO_BIN="${FLUO_BIN:-$ROOT/target/debug/fluo}"
if [ -z "${E2E_MEDIA_WS_URI:-}" ] && [ ! -x "$FLUO_BIN" ]; then
  echo "e2e: server binary not found at $FLUO_BIN (run: cargo build -p fluo-server)" >&2
  exit 1
fi
if [ ! -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]; then
  echo "e2e: Chromium not found at ${CHROMIUM_BIN:-/usr/bin/chromium} (apt-get install chromium)" >&2
  exit 1
fi
install_modules() {
  local dir="$1"
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "e2e: installing npm modules in ${dir#"$ROOT"/}" >&2
    (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund >&2)
  fi
}
install_modules "$ROOT/web"
install_modules "$HERE"
cd "$HERE"
# Chromium's audio (libpulse) needs a runtime folder: without XDG_RUNTIME_DIR it makes
# $TMPDIR/pulse-XXXX (and a link to it in ~/.config/pulse) and leaves it there, on a machine
# where that link does not exist yet. The suite gives it one of its own, removed at the end.
runtime="$(mktemp -d "${TMPDIR:-/tmp}/e2e-runtime.XXXXXX")"
chmod 700 "$runtime"
trap 'rm -rf "$runtime"' EXIT
export XDG_RUNTIME_DIR="$runtime"
# The whole output goes to target/test-logs/e2e.log too; when the run fails, its failed
# subtests are printed again at the end (a long log's tail is what CI shows).
mkdir -p "$ROOT/target/test-logs"
log="$ROOT/target/test-logs/e2e.log"
if [ "$#" -eq 0 ]; then set -- test/; fi
jobs="${E2E_JOBS:-2}"
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "e2e: E2E_JOBS must be a positive number, not '$jobs'" >&2
  exit 2
fi
status=0
# Files whose assertions compare timings (a marker line `// e2e: alone` in the file) run after
# the others, one at a time, whatever E2E_JOBS is: with the whole suite they are the ones two
# files at once made fail (README.md, "How long make test takes").
if [ "$*" = "test/" ] && [ "$jobs" -gt 1 ]; then
  mapfile -t alone < <(grep -l '^// e2e: alone' test/*.test.js | sort)
  mapfile -t rest < <(grep -L '^// e2e: alone' test/*.test.js | sort)
  node --test --test-concurrency="$jobs" "${rest[@]}" 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
  if [ ${#alone[@]} -gt 0 ]; then
    node --test --test-concurrency=1 "${alone[@]}" 2>&1 | tee -a "$log" || {
      rc=${PIPESTATUS[0]}
      [ "$status" -ne 0 ] || status=$rc
    }
  fi
else
  node --test --test-concurrency="$jobs" "$@" 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
fi
if [ "$status" -ne 0 ]; then
  "$ROOT/scripts/tap-failures.sh" e2e "$log"
fi
exit "$status"
