#!/usr/bin/env bash
# Where make test's time goes: each step's wall seconds and CPU seconds, recorded in
# target/make-test-times.tsv and printed as a table.
#   scripts/step-time.sh start             empties the record (make test's first line)
#   scripts/step-time.sh run NAME CMD...   runs CMD and records it as NAME; when CMD fails,
#                                          prints the table (the steps that ran, NAME marked
#                                          FAILED) and exits with CMD's status
#   scripts/step-time.sh report            prints the table (make test's last line)
# CPU seconds: user + system time of CMD and of every process under it that was waited for
# (cargo's rustc and linker runs, the test binaries, the servers the suites start and stop).
# A process left running in the background (the container test's base image download, which
# make test starts early) is not counted in any step. load: the 1-minute load average when
# the step ended (2 cores here: above 2, something else was competing for them).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RECORD="${STEP_TIME_RECORD:-$ROOT/target/make-test-times.tsv}"

# CPU: user + system seconds of this shell's waited-for children so far (bash's `times`,
# second line; called in this shell and written to a file, since `times` in a pipe or in
# $(...) would run in a new process, which has no children yet).
children_cpu() {
  local f="$RECORD.times"
  times >"$f"
  CPU=$(awk 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] }
    printf "%.1f", t
  }' "$f")
  rm -f "$f"
}

report() {
  [ -s "$RECORD" ] || return 0
  echo
  echo "make test, time per step (CPU: user + system of the step's processes; load: 1-minute"
  echo "load average at the step's end):"
  awk -F '\t' '
    BEGIN { printf "  %-18s %9s %9s %9s %6s  %s\n", "step", "wall s", "CPU s", "CPU/wall", "load", "result" }
    {
      ratio = ($2 > 0) ? sprintf("%.2f", $3 / $2) : "-"
      printf "  %-18s %9.1f %9.1f %9s %6s  %s\n", $1, $2, $3, ratio, $4, $5
      wall += $2; cpu += $3
    }
    END {
      printf "  %-18s %9.1f %9.1f %9s %6s  (%.1f min)\n", "total", wall, cpu, \
        (wall > 0) ? sprintf("%.2f", cpu / wall) : "-", "", wall / 60
    }' "$RECORD"
}

case "${1:-}" in
  start)
    mkdir -p "$(dirname "$RECORD")"
    : >"$RECORD"
    ;;
  run)
    if [ "$#" -lt 3 ]; then
      echo "usage: scripts/step-time.sh run NAME COMMAND [ARGS...]" >&2
      exit 2
    fi
    name="$2"
    shift 2
    mkdir -p "$(dirname "$RECORD")"
    children_cpu
    cpu0=$CPU
    t0=$EPOCHREALTIME
    "$@"
    status=$?
    t1=$EPOCHREALTIME
    children_cpu
    cpu1=$CPU
    read -r load _ </proc/loadavg
    result=ok
    [ "$status" -eq 0 ] || result="FAILED (exit $status)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" \
      "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" \
      "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.1f", b - a }')" \
      "$load" "$result" >>"$RECORD"
    if [ "$status" -ne 0 ]; then
      report
    fi
    exit "$status"
    ;;
  report)
    report
    ;;
  *)
    echo "usage: scripts/step-time.sh start | run NAME COMMAND [ARGS...] | report" >&2
    exit 2
    ;;
esac
