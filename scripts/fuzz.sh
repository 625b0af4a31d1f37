#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (preset fuzz: clang, CPU only, ASan + UBSan) and runs each for a bounded
# time on a scratch copy of its committed corpus and regression inputs (the repository is never written). Exits
# non-zero when any target finds a crash, leak, timeout or out-of-memory; prints libFuzzer's final stats per target.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]
#   SECONDS_PER_TARGET  default 60
#   TARGET              default: fuzz_config fuzz_cli fuzz_dataset fuzz_checkpoint fuzz_safetensors fuzz_prompt_jsonl
#                       fuzz_tokenizer_json fuzz_tokenizer_encode; also fuzz_dataset_raw and
#                       fuzz_checkpoint_raw (mutated bytes of real files: they reach libhdf5's own parser)
#   FUZZ_JOBS           targets run at the same time (default: the number of cores)
# A finding is kept in build/fuzz/findings/TARGET/ (crash-*, leak-*, timeout-*, oom-*): minimise it with
#   build/fuzz/tests/fuzz/TARGET -minimize_crash=1 -runs=10000 FILE
# and add it to tests/fuzz/regressions/TARGET/, where every build's ctest replays it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_config fuzz_cli fuzz_dataset fuzz_checkpoint fuzz_safetensors fuzz_prompt_jsonl
                                    fuzz_tokenizer_json fuzz_tokenizer_encode)
jobs=${FUZZ_JOBS:-$(nproc)}

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j"$(nproc)" --target "${targets[@]}"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/dynrl-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

run_target() {
  local t=$1 dir=$scratch/$1
  mkdir -p "$dir/corpus" "$dir/tmp" "$root/build/fuzz/findings/$t"
  cp -r "tests/fuzz/corpus/$t/." "$dir/corpus/"
  [ -d "tests/fuzz/regressions/$t" ] && cp -r "tests/fuzz/regressions/$t/." "$dir/corpus/"
  local start=$SECONDS rc=0
  # -timeout: seconds per input (a hang is a finding); -rss_limit_mb also caps single allocations (malloc_limit_mb).
  TMPDIR=$dir/tmp ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    LSAN_OPTIONS=suppressions=$root/tests/lsan.supp \
    "build/fuzz/tests/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -close_fd_mask=3 -artifact_prefix="$root/build/fuzz/findings/$t/" "$dir/corpus" >"$dir/log" 2>&1 || rc=$?
  echo "$rc $((SECONDS - start))" >"$dir/result"
}

pids=()
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
  run_target "$t" &
  pids+=($!)
done
wait "${pids[@]}" || true

failed=0
printf '%-20s %6s %12s %8s %8s %8s  %s\n' target result executions seconds corpus cov features
for t in "${targets[@]}"; do
  dir=$scratch/$t
  read -r rc took <"$dir/result"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$dir/log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(ls "$dir/corpus" | wc -l)
  result=ok
  [ "$rc" = 0 ] || { result=FAILED; failed=1; }
  printf '%-20s %6s %12s %8s %8s %8s  %s\n' "$t" "$result" "${execs:-?}" "$took" "$corp" "${cov:-?}" "${ft:-?}"
  if [ "$rc" != 0 ]; then
    echo "---- $t: exit $rc; findings in build/fuzz/findings/$t/; end of the log:"
    tail -n 60 "$dir/log"
    echo "----"
  fi
done
exit "$failed"
