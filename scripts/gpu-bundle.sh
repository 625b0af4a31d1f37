#!/usr/bin/env bash
# Builds the CUDA configuration (sm_90, -lineinfo) and packs what the GPU suite needs into gpu-bundle/ (ignored by git):
# the gpu-labelled test binaries (among them test_gpu_ops, the op table), the GPU benchmarks, scripts/gpu-suite.sh's
# inputs, and every shared library they load except libc and friends, the driver (libcuda) and the CUDA toolkit's own
# libraries, which the device has.
# Usage: scripts/gpu-bundle.sh [--check]   (--check: prove the bundle resolves its libraries from itself)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=build/gpu
bundle=gpu-bundle
limit_mib=64

# Build-tree RUNPATHs stay (the tests' discovery runs the binaries at build time); on the device they point nowhere,
# and LD_LIBRARY_PATH, which takes precedence over RUNPATH, finds the bundle's copies.
# -lineinfo: compute-sanitizer's reports name the source line (it changes no instruction).
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDYNRL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_CUDA_FLAGS=-lineinfo -DCMAKE_SKIP_BUILD_RPATH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null

rm -rf "$bundle"
mkdir -p "$bundle/tests" "$bundle/bench" "$bundle/lib"
# gpu-labelled tests: ask ctest which executables carry the label.
mapfile -t gpu_tests < <(ctest --test-dir "$build" -L gpu --show-only=json-v1 |
  python3 -c 'import json,sys; print("\n".join(sorted({t["command"][0] for t in json.load(sys.stdin)["tests"]})))')
for t in "${gpu_tests[@]}"; do [ -n "$t" ] && cp "$t" "$bundle/tests/"; done
for t in test_gpu_ops test_gpu_models test_gpu_nccl; do  # the suite's stages, by name
  [ -x "$bundle/tests/$t" ] || { echo "gpu-bundle: $t was not built" >&2; exit 1; }
done
for b in "$build"/bench/bench_*; do [ -x "$b" ] && [ -f "$b" ] && cp "$b" "$bundle/bench/"; done

# Libraries the device provides itself: the C runtime, the driver and the CUDA toolkit.
provided='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libgcc_s\.|libstdc\+\+\.|libcuda\.|libcudart\.|libcublas|libcublasLt\.|libcurand\.|libnccl\.|libnvrtc|libnvJitLink)'
for bin in "$bundle"/tests/* "$bundle"/bench/*; do
  [ -f "$bin" ] || continue
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
    [[ "$name" =~ $provided ]] && continue
    [ -f "$bundle/lib/$name" ] || cp -L "$path" "$bundle/lib/$name"
  done
done
cp scripts/gpu-suite.sh "$bundle/"
git rev-parse --short HEAD > "$bundle/COMMIT" 2>/dev/null || echo unknown > "$bundle/COMMIT"
n_libs=$(ls "$bundle/lib" | wc -l)
# The libraries travel compressed (OpenBLAS alone is 35 MB with its kernels for every CPU); gpu-suite.sh unpacks.
tar -C "$bundle" -cJf "$bundle/lib.tar.xz" lib

size_kib=$(( $(du -sk "$bundle" | cut -f1) - $(du -sk "$bundle/lib" | cut -f1) ))
echo "gpu-bundle: $(ls "$bundle/tests" | wc -l) test binaries, $(ls "$bundle/bench" | wc -l) benchmarks," \
     "$n_libs libraries (compressed), $((size_kib / 1024)) MiB to travel (gpu-bundle/lib itself stays here)"
if [ "$size_kib" -gt $((limit_mib * 1024)) ]; then
  echo "gpu-bundle: larger than ${limit_mib} MiB, it cannot travel to the device" >&2
  exit 1
fi

if [ "${1:-}" = "--check" ]; then
  # Every library must resolve from the bundle or be one the device provides; then the tests must load and skip.
  status=0
  for bin in "$bundle"/tests/* "$bundle"/bench/*; do
    [ -f "$bin" ] || continue
    while read -r name path; do
      if [[ "$name" =~ $provided ]]; then continue; fi
      case "$path" in
        "$root/$bundle/lib/"*) ;;
        *) echo "gpu-bundle --check: $(basename "$bin") loads $name from $path, outside the bundle" >&2; status=1 ;;
      esac
    done < <(env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$root/$bundle/lib" ldd "$bin" |
             awk '$2 == "=>" {print $1, ($3 == "not" ? "not-found" : $3)}')
  done
  for t in "$bundle"/tests/*; do
    env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$root/$bundle/lib" "$t" --gtest_brief=1 >/dev/null ||
      { echo "gpu-bundle --check: $(basename "$t") failed to run" >&2; status=1; }
  done
  [ "$status" -eq 0 ] && echo "gpu-bundle --check: self-contained; every test binary runs"
fi
rm -rf "$bundle/lib"
exit "${status:-0}"
