#!/usr/bin/env bash
# Runs on the lent GPU machine, from the repository root, with gpu-bundle/ carried along (scripts/gpu-bundle.sh):
# the op table first (test_gpu_ops: every dispatching op on the GPU against the CPU), then every other gpu test
# binary, then the same binaries under compute-sanitizer (the op table on its small shapes, DRL_OPS_SMALL=1: they reach
# every kernel and every block edge, and the large ones would only multiply the sanitizer's time), then the GPU
# benchmarks.
# Writes $OUT/gpu-suite.log (everything) and $OUT/figures.md (benchmark output); ends with "N passed, N failed".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bundle=${DRL_GPU_BUNDLE:-$root/gpu-bundle}
out=${OUT:-$root/gpu-out}
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

say() { echo "$*" | tee -a "$log"; }
passed=0
failed=0
record() {  # record NAME EXIT_CODE
  if [ "$2" -eq 0 ]; then passed=$((passed + 1)); say "PASS $1"; else failed=$((failed + 1)); say "FAIL $1 (exit $2)"; fi
}

say "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$log"
say "bundle commit: $(cat "$bundle/COMMIT" 2>/dev/null || echo unknown)"

# The op table first, so a device that is lent for only a few minutes checks every op.
tests=()
if [ -x "$bundle/tests/test_gpu_ops" ]; then
  tests+=("$bundle/tests/test_gpu_ops")
else
  record "test_gpu_ops (missing from the bundle)" 1
fi
for t in "$bundle"/tests/*; do
  [ "$(basename "$t")" = test_gpu_ops ] || tests+=("$t")
done

say "== gpu tests"
for t in "${tests[@]}"; do
  name=$(basename "$t")
  "$t" --gtest_output="xml:$out/$name.xml" >>"$log" 2>&1
  record "$name" $?
done

say "== compute-sanitizer"
if command -v compute-sanitizer >/dev/null 2>&1; then
  for tool in memcheck initcheck; do
    for t in "${tests[@]}"; do
      name=$(basename "$t")
      extra=()
      [ "$tool" = memcheck ] && extra=(--leak-check full)
      DRL_OPS_SMALL=1 compute-sanitizer --tool "$tool" --error-exitcode 86 "${extra[@]}" "$t" >>"$log" 2>&1
      record "$tool:$name" $?
    done
  done
else
  say "compute-sanitizer not found: skipped"
fi

say "== benchmarks"
for b in "$bundle"/bench/*; do
  [ -f "$b" ] || continue
  name=$(basename "$b")
  { echo "### $name"; echo; } >>"$figures"
  "$b" --device cuda >>"$figures" 2>>"$log"
  record "bench:$name" $?
done

say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
