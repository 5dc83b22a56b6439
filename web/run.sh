#!/usr/bin/env bash
# Start the Fluo demo web app (installs its npm modules first when missing).
#   web/run.sh [--port 8443] [--bind 0.0.0.0] [--ws-uri ws://127.0.0.1:8888/kurento] [--http] [--port-file PATH]
#              [--access-token TOKEN] [--player-any-uri]   (see server.js)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "web: installing npm modules" >&2
  npm install --ignore-scripts --no-audit --no-fund >&2
fi
exec node server.js "$@"
