#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-fuzz (libFuzzer) of what peers and clients control:
# Kurento Protocol frames (jsonrpc), WebRTC SDP offers and answers (sdp), RTP/RTCP/STUN/DTLS
# datagrams into the media core (rtp_rtcp), element URIs and plain-RTP SDP (uri_sdp_plain),
# SRTP/SRTCP and the viewer's RTCP into the egress fast path (egress_rtcp), the HTTP
# listener's request parsing (http_request), a stream's dependency descriptors through the SVC
# filter (dependency_descriptor). The fuzz crate links the crates its targets call
# (fluo-core, fluo-sfu, fluo-gst, fluo-egress, fluo-testkit without its `live` feature), not
# fluo-server: see fuzz/Cargo.toml.
#
#   scripts/fuzz.sh SECS [TARGET...]   run each target (all by default) for SECS seconds
#
# Seeds are read from fuzz/corpus/<target>/ (committed); what libFuzzer finds goes to
# fuzz/target/corpus/<target>/ and crash inputs to fuzz/artifacts/<target>/ (both ignored by
# git). A crash listed in fuzz/known-crashes.txt (a third-party bug) is reported, not
# counted. Uses nightly when rustup has it, otherwise stable with RUSTC_BOOTSTRAP=1 and no
# sanitizer. Installs cargo-fuzz when it is missing (scripts/deps.sh test does too). When
# cargo-fuzz cannot be installed or no toolchain builds the targets, fuzzing cannot run: with
# CI=true that fails (exit 1, one line saying why); otherwise it prints what was not checked
# and exits 0. Exits 1 if a target crashed or ran 0 inputs (libFuzzer's final
# stat::number_of_executed_units). FUZZ_ARGS adds libFuzzer flags; FUZZ_TOOLCHAIN=
# nightly|stable|default forces one toolchain (default: plain cargo).
set -euo pipefail

SECS="${1:-}"
if ! [[ "$SECS" =~ ^[0-9]+$ ]] || [ "$SECS" -lt 1 ]; then
  echo "usage: $0 SECONDS [TARGET...]" >&2
  exit 2
fi
shift
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
cd "$FUZZ"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(jsonrpc sdp rtp_rtcp uri_sdp_plain egress_rtcp http_request dependency_descriptor)
fi

in_ci() {
  case "${CI:-}" in
    true | TRUE | True | 1 | yes) return 0 ;;
    *) return 1 ;;
  esac
}

# Fuzzing cannot run here: a failure under CI, else said (with what goes unchecked).
cannot_run() {
  if in_ci; then
    echo "fuzz: NOT CHECKED under CI=true: $*" >&2
    exit 1
  fi
  echo
  echo "==================================================================="
  echo "SKIPPED: fuzzing not checked (targets ${TARGETS[*]}, no input was run): $*"
  echo "(with CI=true this fails)"
  echo "==================================================================="
  exit 0
}

if ! command -v cargo >/dev/null 2>&1; then
  cannot_run "cargo is not installed"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (once)"
  cargo install cargo-fuzz --locked || cannot_run "cargo-fuzz could not be installed (cargo install cargo-fuzz --locked failed)"
  cargo fuzz --version >/dev/null 2>&1 || cannot_run "cargo-fuzz was installed but 'cargo fuzz' does not run"
fi

# Toolchains to try, in order: nightly (AddressSanitizer), then stable with RUSTC_BOOTSTRAP=1
# (cargo-fuzz's flags are unstable ones) and no sanitizer: panics and aborts are still found.
CANDIDATES=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  CANDIDATES+=("$FUZZ_TOOLCHAIN")
elif command -v rustup >/dev/null 2>&1; then
  if rustup toolchain list | grep -q '^nightly'; then
    CANDIDATES+=(nightly)
  fi
  CANDIDATES+=(stable)
else
  CANDIDATES+=(default)
fi

BUILD_LOG="$FUZZ/target/fuzz-build.log"
mkdir -p "$FUZZ/target"
: >"$BUILD_LOG"
CARGO=()
SAN=()
for tc in "${CANDIDATES[@]}"; do
  case "$tc" in
    nightly) try_cargo=(cargo +nightly) try_san=() ;;
    stable) try_cargo=(env RUSTC_BOOTSTRAP=1 cargo +stable) try_san=(--sanitizer none) ;;
    default) try_cargo=(env RUSTC_BOOTSTRAP=1 cargo) try_san=(--sanitizer none) ;;
    *)
      echo "FUZZ_TOOLCHAIN must be nightly, stable or default" >&2
      exit 2
      ;;
  esac
  echo "fuzz: building ${TARGETS[*]} with $tc${try_san[*]:+ (${try_san[*]})}"
  start=$SECONDS
  ok=1
  for t in "${TARGETS[@]}"; do
    if ! "${try_cargo[@]}" fuzz build -O "${try_san[@]}" "$t" >>"$BUILD_LOG" 2>&1; then
      ok=0
      break
    fi
  done
  if [ $ok -eq 1 ]; then
    echo "fuzz: built in $((SECONDS - start)) s"
    CARGO=("${try_cargo[@]}")
    SAN=("${try_san[@]}")
    break
  fi
  echo "fuzz: the $tc build failed (last lines of $BUILD_LOG):"
  tail -n 15 "$BUILD_LOG" | sed 's/^/    /'
done
if [ ${#CARGO[@]} -eq 0 ]; then
  cannot_run "no toolchain could build the fuzz targets (tried: ${CANDIDATES[*]}; see $BUILD_LOG)"
fi

declare -A RUNS RATE CRASH
failed=0
for t in "${TARGETS[@]}"; do
  work="$FUZZ/target/corpus/$t"
  log="$FUZZ/target/logs/$t.log"
  mkdir -p "$work" "$(dirname "$log")" "$FUZZ/artifacts/$t"
  before=$(find "$FUZZ/artifacts/$t" -type f | wc -l)
  echo "fuzz: $t for $SECS s (log: $log)"
  rc=0
  # shellcheck disable=SC2086
  "${CARGO[@]}" fuzz run -O "${SAN[@]}" "$t" "$work" "$FUZZ/corpus/$t" -- \
    -max_total_time="$SECS" -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 \
    ${FUZZ_ARGS:-} >"$log" 2>&1 || rc=$?
  # libFuzzer's final statistics (-print_final_stats=1); a run that ended early (a crash)
  # has only its progress lines (#N).
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1 || true)
  if [ -z "$runs" ]; then
    runs=$(grep -oE '^#[0-9]+' "$log" | tr -d '#' | tail -n 1 || true)
  fi
  runs=${runs:-0}
  rate=$(grep -oE 'exec/s: [0-9]+' "$log" | grep -oE '[0-9]+' | tail -n 1 || true)
  new=$(($(find "$FUZZ/artifacts/$t" -type f | wc -l) - before))
  RUNS[$t]=$runs
  RATE[$t]=${rate:-?}
  if [ $rc -ne 0 ] || [ "$new" -gt 0 ]; then
    known=""
    while IFS=$'\t' read -r kt pattern what; do
      if [ "$kt" = "$t" ] && grep -qF -- "$pattern" "$log"; then
        known="$what"
      fi
    done < <(grep -v '^#' "$FUZZ/known-crashes.txt" 2>/dev/null || true)
    grep -E -A1 'panicked at|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY' "$log" | head -n 6 | sed 's/^/    /' || true
    if [ -n "$known" ]; then
      CRASH[$t]="KNOWN third-party crash, not counted (fuzz/known-crashes.txt): ${known%% (*}"
    else
      CRASH[$t]="CRASH (exit $rc, $new new file(s) in fuzz/artifacts/$t/)"
      failed=1
    fi
  elif [ "$runs" -eq 0 ]; then
    # Nothing was fuzzed: a harness that exits at once, a corpus that cannot be read, ...
    CRASH[$t]="FAILED: 0 inputs run (see $log)"
    failed=1
  else
    CRASH[$t]="no crash"
  fi
  echo "fuzz: $t: ${RUNS[$t]} inputs, ${RATE[$t]} exec/s, ${CRASH[$t]}"
done

echo
echo "fuzz summary (${SECS} s per target, ${CARGO[*]}${SAN[*]:+ ${SAN[*]}}):"
printf '  %-15s %12s %10s  %s\n' target inputs exec/s result
for t in "${TARGETS[@]}"; do
  printf '  %-15s %12s %10s  %s\n' "$t" "${RUNS[$t]}" "${RATE[$t]}" "${CRASH[$t]}"
done
exit $failed
