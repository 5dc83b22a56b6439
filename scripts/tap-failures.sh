#!/usr/bin/env bash
# Prints, after a failed node --test run, every failed subtest with its TAP diagnostics (error,
# expected/actual, where it failed), so that the end of a long log says what failed and why.
#   scripts/tap-failures.sh SUITE LOG
# Each block is cut at 60 lines; the whole log stays in LOG.
set -uo pipefail
suite="$1"
log="$2"
echo
echo "==== $suite: failed subtests (full log: $log) ===="
awk '
  /^[[:space:]]*not ok [0-9]+ - / { inblock = 1; n = 0; print ""; }
  inblock { if (n < 60) print; n++; if ($0 ~ /^[[:space:]]*\.\.\.[[:space:]]*$/) inblock = 0; }
' "$log"
echo "==== end of $suite failures ===="
