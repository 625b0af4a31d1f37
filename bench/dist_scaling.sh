#!/usr/bin/env bash
# Data-parallel AdamW (with and without ZeRO-1) and one-byte SPSA at 1, 2 and 4 ranks: bench_dist at each rank count,
# one table. Usage: bench/dist_scaling.sh [--append docs/benchmarks.md]  (BUILD=build/default by default)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build/default}
append=""
[ "${1:-}" = "--append" ] && append=${2:?--append needs a file}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
csv=$(mktemp)
trap 'rm -f "$csv"' EXIT
"$build/bench/bench_dist" --threads 1 --csv "$csv" >/dev/null
"$build/bench/bench_dist" --threads "$(nproc)" --csv "$csv" >/dev/null
for np in 2 4; do mpirun -np "$np" "$build/bench/bench_dist" --threads 1 --csv "$csv" >/dev/null; done
cores=$(nproc)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
report=$(
  echo "### Data parallel and SPSA by rank count (bench/dist_scaling.sh)"
  echo
  echo "$(date -u +%F), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), CPU backend, $cpu, $cores cores."
  echo "The default policy ($(head -1 "$csv" | cut -d, -f4) parameters) on \`add\`, SFT: AdamW with the global batch of 32 split over"
  echo "the ranks, or one-byte SPSA with one perturbation (its own batch of 32) per rank. Bytes are what one rank sends per step"
  echo "(measured by the comm layer); the gradient payload is the whole fp32 gradient, the SPSA payload one byte."
  echo "With $cores cores, more than $cores ranks share cores, so these CPU timings show the overheads, not the scaling."
  echo
  echo "| ranks | threads/rank | mode | ms/step | bytes sent/rank/step | payload/rank/step | optimizer state/rank |"
  echo "|---|---|---|---|---|---|---|"
  awk -F, '{printf "| %s | %s | %s | %.1f | %.0f | %.0f | %s |\n", $1, $2, $3, $5, $6, $7, $8}' "$csv"
)
echo "$report"
if [ -n "$append" ]; then printf '\n%s\n' "$report" >> "$append"; fi
