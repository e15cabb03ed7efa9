#!/usr/bin/env bash
# Runs one libFuzzer target the way the suite does (ctest registers one test per target, label `fuzz`):
#   run_target.sh <fuzz binary> <target name>
# First every input of the committed corpus (tests/fuzz/corpus/<target>/: seeds and the regression inputs
# of bugs found), then fuzzing from there for MERCATO_FUZZ_SECONDS (default 30; 0: the corpus only).
# Works on a copy of the corpus under MERCATO_FUZZ_WORK_DIR, so the run never writes into the source tree;
# a crash, leak, timeout (MERCATO_FUZZ_TIMEOUT, 10 s per input), out-of-memory (2 GiB) or a broken rule
# (abort) fails the test and leaves the input in <work>/<target>/artifacts/.
set -euo pipefail

bin="$1"
name="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
seconds="${MERCATO_FUZZ_SECONDS:-30}"
seeds="${MERCATO_FUZZ_CORPUS_DIR:-$here/corpus}/$name"
work="${MERCATO_FUZZ_WORK_DIR:-${TMPDIR:-/tmp}/mercato-fuzz}/$name"

if [[ ! -d "$seeds" ]] || [[ -z "$(ls -A "$seeds")" ]]; then
  echo "run_target: no seed corpus in $seeds" >&2
  exit 1
fi
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
cp "$seeds"/* "$work/corpus/"

args=(-timeout="${MERCATO_FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -malloc_limit_mb=2048
      -artifact_prefix="$work/artifacts/" -print_final_stats=1 -detect_leaks=1)
if [[ -f "$here/$name.dict" ]]; then
  args+=(-dict="$here/$name.dict")
fi
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if [[ -z "${ASAN_SYMBOLIZER_PATH:-}" ]] && command -v llvm-symbolizer >/dev/null; then
  export ASAN_SYMBOLIZER_PATH="$(command -v llvm-symbolizer)"   # stack traces with file:line
fi
export TMPDIR="$work"   # the TOML target's scratch file

# Each committed input once, by name (a regression input that fails says which file it is).
echo "run_target: $name: $(ls "$seeds" | wc -l) committed inputs"
set +e
"$bin" "${args[@]}" -runs=0 "$work/corpus" > "$work/corpus.log" 2>&1
status=$?
set -e
tail -n 3 "$work/corpus.log"
if (( status != 0 )); then
  tail -n 80 "$work/corpus.log" >&2
  echo "run_target: $name failed on its committed corpus (exit $status)" >&2
  exit "$status"
fi
if (( seconds > 0 )); then
  echo "run_target: $name: fuzzing for ${seconds}s"
  set +e
  "$bin" "${args[@]}" -max_total_time="$seconds" "$work/corpus" > "$work/fuzz.log" 2>&1
  status=$?
  set -e
  grep -E '^#[0-9]+ +(INITED|DONE)|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb' \
    "$work/fuzz.log" || true
  if (( status != 0 )); then
    tail -n 80 "$work/fuzz.log" >&2
    echo "run_target: $name failed (exit $status); the input is in $work/artifacts/" >&2
    exit "$status"
  fi
fi
echo "run_target: $name passed"
