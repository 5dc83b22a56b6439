#!/usr/bin/env bash
# Runs a test suite with TMPDIR set to a fresh, empty folder and fails when the suite leaves
# anything in it: every test removes its temporary files and folders, pass or fail.
#   scripts/tmp-check.sh NAME COMMAND [ARGS...]
# The folder is target/test-tmp/NAME (emptied first; what is left stays there until the next
# run, for a look). The servers, browsers and tools that the tests start inherit TMPDIR.
# GStreamer's registry cache is not in TMPDIR ($XDG_CACHE_HOME or ~/.cache/gstreamer-1.0).
# The exit status is COMMAND's when it failed, else 1 when something was left, else 0.
set -uo pipefail
if [ "$#" -lt 2 ]; then
  echo "usage: scripts/tmp-check.sh NAME COMMAND [ARGS...]" >&2
  exit 2
fi
name="$1"
shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/target/test-tmp/$name"
rm -rf "$dir"
mkdir -p "$dir" || exit 1
TMPDIR="$dir" "$@"
status=$?
mapfile -t left < <(cd "$dir" && find . -mindepth 1 | sed 's|^\./||' | sort)
if [ "${#left[@]}" -gt 0 ]; then
  echo "tmp-check: FAILED: $name left ${#left[@]} file(s) and folder(s) in its TMPDIR ($dir):" >&2
  printf '    %s\n' "${left[@]:0:50}" >&2
  if [ "${#left[@]}" -gt 50 ]; then
    echo "    ... and $((${#left[@]} - 50)) more" >&2
  fi
  [ "$status" -ne 0 ] || status=1
else
  echo "tmp-check: $name left nothing in its TMPDIR"
fi
exit "$status"
