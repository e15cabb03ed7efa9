#!/usr/bin/env bash
# The long fuzzing run: each libFuzzer target of tests/fuzz for a number of executions (10 million by
# default), starting from its committed corpus, with its dictionary, under ASan+UBSan as in the suite.
# Reports per target: executions, time, exec/s, edges covered (libFuzzer's `cov:`) out of the edges
# instrumented in the binary, features, corpus size, peak RSS, and whether it ended clean.
#
#   bench/fuzz_long.sh [target...]        # default: every target, one after the other
#   MERCATO_FUZZ_RUNS=10000000            # executions per target
#   MERCATO_FUZZ_LONG_DIR=/tmp/mercato-fuzz-long   # work dirs (corpus grown there, artifacts, logs)
#   MERCATO_FUZZ_LONG_REPORT=<file>       # the markdown table is appended there too (e.g. bench/results.md)
#
# Builds build/fuzz first (clang-15, as scripts/test does). A crash, leak, timeout, out-of-memory or broken
# rule stops that target; its input is left in <dir>/<target>/artifacts/ (fix it, then add it to
# tests/fuzz/corpus/<target>/ as regress-<what>). Exit status: 0 when every target ended clean.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${MERCATO_FUZZ_RUNS:-10000000}"
dir="${MERCATO_FUZZ_LONG_DIR:-${TMPDIR:-/tmp}/mercato-fuzz-long}"
build="$here/build/fuzz"

if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$here" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++-15 -DMERCATO_BUILD_FUZZ=ON >/dev/null
fi
cmake --build "$build" -j"$(nproc)" >/dev/null

targets=("$@")
if (( ${#targets[@]} == 0 )); then
  for src in "$here"/tests/fuzz/*_fuzz.cpp; do
    name="$(basename "$src" _fuzz.cpp)"
    targets+=("$name")
  done
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if [[ -z "${ASAN_SYMBOLIZER_PATH:-}" ]] && command -v llvm-symbolizer >/dev/null; then
  export ASAN_SYMBOLIZER_PATH="$(command -v llvm-symbolizer)"
fi

table="$dir/report.md"
mkdir -p "$dir"
{
  echo
  echo "### Long fuzzing run, $(date -u +%Y-%m-%d) ($(git -C "$here" rev-parse --short HEAD), $(nproc) cores, ASan+UBSan, clang-15)"
  echo
  echo "| target | executions | time | exec/s | edges covered | of instrumented | features | corpus (units / size) | peak RSS | result |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
} > "$table"

failed=0
for name in "${targets[@]}"; do
  bin="$build/tests/fuzz/${name}_fuzz"
  work="$dir/$name"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp "$here/tests/fuzz/corpus/$name"/* "$work/corpus/"
  args=(-runs="$runs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1
        -detect_leaks=1 -artifact_prefix="$work/artifacts/")
  [[ -f "$here/tests/fuzz/$name.dict" ]] && args+=(-dict="$here/tests/fuzz/$name.dict")
  echo "fuzz_long: $name: $runs executions ($(date -u +%H:%M:%S))"
  start=$(date +%s)
  set +e
  TMPDIR="$work" "$bin" "${args[@]}" "$work/corpus" > "$work/fuzz.log" 2>&1
  status=$?
  set -e
  seconds=$(( $(date +%s) - start ))
  stat() { grep -oE "stat::$1: *[0-9]+" "$work/fuzz.log" | grep -oE '[0-9]+$' | tail -1; }
  execs="$(stat number_of_executed_units)"
  rss="$(stat peak_rss_mb)"
  last="$(grep -E '^#[0-9]+[[:space:]]+(DONE|NEW|REDUCE|pulse|INITED)' "$work/fuzz.log" | tail -1)"
  cov="$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)"
  ft="$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)"
  corp="$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' <<<"$last" | sed 's/corp: //' || true)"
  total="$(grep -oE 'Loaded 1 modules +\([0-9]+ inline 8-bit counters' "$work/fuzz.log" | grep -oE '[0-9]+ inline' |
           grep -oE '[0-9]+' || true)"
  share=""
  if [[ -n "$cov" && -n "$total" ]]; then
    share="$(awk -v c="$cov" -v t="$total" 'BEGIN { printf "%d (%.1f%%)", t, 100 * c / t }')"
  fi
  result="clean"
  if (( status != 0 )); then
    result="FAILED (exit $status; input in $work/artifacts)"
    failed=1
  fi
  rate=$(( ${execs:-0} / (seconds > 0 ? seconds : 1) ))
  printf '| %s | %s | %d s | %s | %s | %s | %s | %s | %s MB | %s |\n' "$name" "${execs:-?}" "$seconds" "$rate" \
    "${cov:-?}" "${share:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}" "$result" | tee -a "$table"
done

if [[ -n "${MERCATO_FUZZ_LONG_REPORT:-}" ]]; then
  cat "$table" >> "$MERCATO_FUZZ_LONG_REPORT"
fi
echo "fuzz_long: report in $table"
exit "$failed"
