#!/usr/bin/env bash
# Runs on the lent GPU machine, from the repository root, with gpu-bundle/ carried along (scripts/gpu-bundle.sh, a
# -lineinfo build), in this order, each stage timed:
#   1. the op table (test_gpu_ops: every dispatching op on the GPU against the CPU, at the table's tolerances);
#   2. compute-sanitizer: memcheck (with leak check) over every gpu test binary, then racecheck and synccheck over the
#      op table, which reaches every kernel (the binaries run their small shapes, DRL_OPS_SMALL=1);
#   3. the whole-model GPU tests (test_gpu_models);
#   4. the one-rank NCCL smoke test (test_gpu_nccl: communicator, collectives, completion wait, a planted timeout);
#   5. the benchmarks with --device cuda (each names the device in its header).
# A stage that would start after DRL_SUITE_BUDGET_S seconds (default 540: one device call is at most 600) is reported
# as not run. Writes $OUT/gpu-suite.log (everything), $OUT/figures.md (the benchmarks' output) and gtest XML; ends
# with a summary line: ops matched and the worst error as a fraction of its bound, each stage's seconds, and
# "N passed, N failed, N not run". Exits nonzero unless every check ran and passed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bundle=${DRL_GPU_BUNDLE:-$root/gpu-bundle}
out=${OUT:-$root/gpu-out}
budget=${DRL_SUITE_BUDGET_S:-540}
mkdir -p "$out"
log="$out/gpu-suite.log"
figures="$out/figures.md"
: > "$log"
: > "$figures"
libdir="$bundle/lib"
if [ ! -d "$libdir" ] && [ -f "$bundle/lib.tar.xz" ]; then
  libdir=$(mktemp -d)/lib
  tar -C "$(dirname "$libdir")" -xJf "$bundle/lib.tar.xz"
fi
# NCCL: the toolkit's copy where there is one, else the one PyTorch's nvidia-nccl package installed.
nccl=$(python3 -c 'import os, nvidia.nccl as m; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$libdir:/usr/local/cuda/lib64:/usr/local/cuda/lib${nccl:+:$nccl}:${LD_LIBRARY_PATH:-}"

# The tests that read fixtures find them in this tree, not where the binaries were built.
export DYNRL_SOURCE_DIR="$root"
say() { echo "$*" | tee -a "$log"; }
start=$SECONDS
passed=0
failed=0
not_run=0
stages=""
record() {  # record NAME EXIT_CODE
  case "$2" in
    0) passed=$((passed + 1)); say "PASS $1" ;;
    124) failed=$((failed + 1)); say "FAIL $1 (timed out)" ;;
    *) failed=$((failed + 1)); say "FAIL $1 (exit $2)" ;;
  esac
}
# stage NAME: starts a stage unless the budget is spent (then the caller skips it).
stage_name=""
stage_start=0
stage() {
  stage_end
  if [ $((SECONDS - start)) -ge "$budget" ]; then
    say "== $1: not run, the suite's ${budget} s are spent"
    not_run=$((not_run + 1))
    return 1
  fi
  say "== $1"
  stage_name=$1
  stage_start=$SECONDS
}
stage_end() {
  [ -n "$stage_name" ] && stages+="${stages:+, }$stage_name $((SECONDS - stage_start)) s"
  stage_name=""
}
bin() { echo "$bundle/tests/$1"; }
# run_test NAME SECONDS [ENV=VALUE...] -- BINARY [ARGS...]: one binary under a time limit, its output in the log.
run_test() {
  local name=$1 limit=$2
  shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  if [ ! -x "$1" ]; then record "$name (missing from the bundle)" 1; return; fi
  env "${envs[@]}" timeout "$limit" "$@" >>"$log" 2>&1
  record "$name" $?
}

say "== device"
device=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
device=${device:-no GPU visible (nvidia-smi)}
say "$device"
say "bundle commit: $(cat "$bundle/COMMIT" 2>/dev/null || echo unknown)"

ops_summary="ops: not run"
if stage "op table"; then
  run_test test_gpu_ops 240 -- "$(bin test_gpu_ops)" --gtest_output="xml:$out/test_gpu_ops.xml"
  # Each op prints "[ measured ] NAME: worst GPU-vs-CPU error X of its bound"; gtest counts the passed ops.
  n_ops=$(grep -c '^\[ measured \]' "$log")
  n_ok=$(grep -c '^\[       OK \] Table/GpuOp' "$log")
  worst=$(sed -n 's/^\[ measured \] \([^:]*\): worst GPU-vs-CPU error \([^ ]*\) of its bound.*/\2 \1/p' "$log" |
          sort -g | tail -1 | awk '{printf "%s of its bound (%s)", $1, $2}')
  n_bits=$(grep -c '^\[ measured \] [^:]*: worst GPU-vs-CPU error 0 of its bound' "$log")
  ops_summary="ops: $n_ok of $n_ops matched ($n_bits with identical bits), worst error $worst"
  # Skipped tests exit 0: an op table that compared nothing is a failure, not a pass.
  [ "$n_ops" -gt 0 ] || record "test_gpu_ops compared no op (no usable GPU?)" 1
  say "$ops_summary"
fi

if stage "compute-sanitizer"; then
  if command -v compute-sanitizer >/dev/null 2>&1; then
    san="compute-sanitizer --error-exitcode 86 --show-backtrace device"
    for t in "$bundle"/tests/*; do
      run_test "memcheck:$(basename "$t")" 150 DRL_OPS_SMALL=1 -- $san --tool memcheck --leak-check full "$t"
    done
    for tool in racecheck synccheck; do
      run_test "$tool:test_gpu_ops" 90 DRL_OPS_SMALL=1 -- $san --tool "$tool" "$(bin test_gpu_ops)"
    done
  else
    say "compute-sanitizer not found"
    record "compute-sanitizer (missing on the device)" 1
  fi
fi

if stage "whole models"; then
  run_test test_gpu_models 240 -- "$(bin test_gpu_models)" --gtest_output="xml:$out/test_gpu_models.xml"
fi

if stage "nccl"; then
  run_test test_gpu_nccl 60 -- "$(bin test_gpu_nccl)" --gtest_output="xml:$out/test_gpu_nccl.xml"
fi

if stage "benchmarks"; then
  for b in "$bundle"/bench/*; do
    [ -f "$b" ] || continue
    name=$(basename "$b")
    { echo "### $name"; echo; } >>"$figures"
    timeout 120 "$b" --device cuda >>"$figures" 2>>"$log"
    record "bench:$name" $?
  done
fi
stage_end

say "gpu-suite on ${device}: ${ops_summary}; stages: ${stages}; $passed passed, $failed failed, $not_run not run"
[ "$failed" -eq 0 ] && [ "$not_run" -eq 0 ]
