#!/usr/bin/env bash
# Side-by-side training throughput: dynrl (bench/bench_train, the real model path through drl_transformer_*) against
# eager PyTorch (bench/reference/train_ref.py) on the same two models, batch shapes, warm-up and timed steps, run back
# to back in one go on the same cores. Prints both programs' tables, then one table with both throughputs and the
# ratio dynrl / PyTorch; with --append FILE that table is also appended to FILE (e.g. docs/benchmarks.md).
#
#   bench/side_by_side.sh [--build DIR] [--python PY] [--threads N] [--warmup N] [--steps N] [--append FILE]
#
# Defaults: --build build/default, --python .venv/bin/python, --threads 2, --warmup 3, per-size timed steps of the
# two programs (20 small, 8 medium). Both sides report the median timed step. A few minutes on 2 cores.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/default
python=$root/.venv/bin/python
threads=2
warmup=3
steps=""
append=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --append) append=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--python PY] [--threads N] [--warmup N] [--steps N] [--append FILE]" >&2
       exit 2 ;;
  esac
done
bench=$build/bench/bench_train
[ -x "$bench" ] || { echo "$0: $bench not found (cmake --build $build --target bench_train)" >&2; exit 1; }
"$python" -c "import torch" 2>/dev/null || { echo "$0: $python cannot import torch (scripts/install-deps.sh --torch)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step_args=()
[ -n "$steps" ] && step_args=(--steps "$steps")
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# The same thread count for both: OpenMP and OpenBLAS here, torch.set_num_threads there.
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
  "$bench" --warmup "$warmup" "${step_args[@]}" --csv "$tmp/dynrl.csv"
echo
OMP_NUM_THREADS=$threads \
  "$python" "$root/bench/reference/train_ref.py" --threads "$threads" --warmup "$warmup" "${step_args[@]}" \
  --csv "$tmp/torch.csv"
echo
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
commit=${DRL_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}
torch_version=$("$python" -c "import torch; print(torch.__version__)")
report=$tmp/report.md
{
  echo "### Training throughput side by side: dynrl vs PyTorch"
  echo
  echo "${cpu:-unknown CPU}, $(nproc) cores; CPU, float32, $threads threads each; $(date -u +%Y-%m-%d); commit $commit;" \
       "PyTorch $torch_version (eager, SDPA attention, torch.optim.AdamW). Same models, batch, warm-up steps ($warmup)" \
       "and timed steps; median step. Load average before / after: $load_before / $load_after."
  echo
  echo "| model | params | B x T | timed steps | dynrl ms/step | PyTorch ms/step | dynrl tokens/s | PyTorch tokens/s | dynrl / PyTorch |"
  echo "|---|---|---|---|---|---|---|---|---|"
  # csv columns: model,params,B,T,warmup,steps,ms_per_step,tokens_per_s[,...]
  # joined: model, dynrl params..mfu ($2-$9), PyTorch params..tokens_per_s ($10-$16)
  join -t, <(tail -n +2 "$tmp/dynrl.csv" | sort) <(tail -n +2 "$tmp/torch.csv" | sort) | sort -t, -k2,2n |
    awk -F, '{ if ($2 != $10 || $3 != $11 || $4 != $12 || $6 != $14)
                 printf "side_by_side: %s differs between the two sides\n", $1 > "/dev/stderr"
               printf "| %s | %.2fM | %s x %s | %s | %.2f | %.2f | %.0f | %.0f | %.2f |\n",
                      $1, $2 / 1e6, $3, $4, $6, $7, $15, $8, $16, $8 / $16 }'
} > "$report"
cat "$report"
if [ -n "$append" ]; then
  { cat "$report"; echo; } >> "$append"
  echo "appended to $append"
fi
