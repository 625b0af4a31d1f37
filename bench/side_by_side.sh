#!/usr/bin/env bash
# Side-by-side runs against PyTorch on the same cores, back to back, one section after the other:
#   train    training throughput: dynrl (bench/bench_train, the real model path through drl_transformer_*) against
#            eager PyTorch (bench/reference/train_ref.py) on the same two models, batch shapes, warm-up and timed steps;
#   rollout  rollout throughput: dynrl (bench/bench_rollout, drl_rollout_generate) against PyTorch with a KV cache
#            (bench/reference/generate_ref.py) on the default policy, 8 prompts x 16 rollouts, 16 and 64 new tokens.
# Prints both programs' tables, then per section one table with both figures and the ratio dynrl / PyTorch; with
# --append FILE those tables are also appended to FILE (e.g. docs/benchmarks.md).
#
#   bench/side_by_side.sh [--build DIR] [--python PY] [--threads N] [--warmup N] [--steps N] [--reps N]
#                         [--only train|rollout] [--append FILE]
#
# Defaults: --build build/default, --python .venv/bin/python, --threads 2, both sections; train: --warmup 3,
# per-size timed steps of the two programs (20 small, 8 medium); rollout: 1 warm-up call, per-length timed calls
# (7 for 16 tokens, 3 for 64) unless --reps. Both sides report the median timed step (call). A few minutes on 2 cores.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/default
python=$root/.venv/bin/python
threads=2
warmup=3
steps=""
reps=""
only=""
append=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --append) append=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--python PY] [--threads N] [--warmup N] [--steps N] [--reps N]" \
            "[--only train|rollout] [--append FILE]" >&2
       exit 2 ;;
  esac
done
case "$only" in
  "") sections="train rollout" ;;
  train|rollout) sections=$only ;;
  *) echo "$0: --only takes train or rollout" >&2; exit 2 ;;
esac
for s in $sections; do
  [ "$s" = train ] && prog=bench_train || prog=bench_rollout
  [ -x "$build/bench/$prog" ] || { echo "$0: $build/bench/$prog not found (cmake --build $build --target $prog)" >&2; exit 1; }
done
"$python" -c "import torch" 2>/dev/null || { echo "$0: $python cannot import torch (scripts/install-deps.sh --torch)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
commit=${DRL_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}
torch_version=$("$python" -c "import torch; print(torch.__version__)")
report=$tmp/report.md
: > "$report"

run_train() {
  local bench=$build/bench/bench_train
  local step_args=()
  [ -n "$steps" ] && step_args=(--steps "$steps")
  local load_before load_after
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
    echo
  } >> "$report"
}

run_rollout() {
  local bench=$build/bench/bench_rollout
  local rep_args=()
  [ -n "$reps" ] && rep_args=(--reps "$reps")
  local load_before load_after
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
    "$bench" "${rep_args[@]}" --csv "$tmp/dynrl_rollout.csv"
  echo
  OMP_NUM_THREADS=$threads \
    "$python" "$root/bench/reference/generate_ref.py" --threads "$threads" "${rep_args[@]}" \
    --csv "$tmp/torch_rollout.csv"
  echo
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  {
    echo "### Rollout throughput side by side: dynrl vs PyTorch"
    echo
    echo "${cpu:-unknown CPU}, $(nproc) cores; CPU, float32, $threads threads each; $(date -u +%Y-%m-%d); commit $commit;" \
         "PyTorch $torch_version (inference mode, preallocated KV cache, SDPA attention, torch.multinomial)." \
         "Default policy, 8 prompts of 8 tokens x 16 rollouts = 128 rows, prefill once per prompt, temperature 1," \
         "log-prob and entropy of every sampled token; every row generates the full length on both sides." \
         "Median call. Load average before / after: $load_before / $load_after."
    echo
    echo "| new tokens | rows | timed calls | dynrl ms/call | PyTorch ms/call | dynrl tokens/s | PyTorch tokens/s | dynrl / PyTorch |"
    echo "|---|---|---|---|---|---|---|---|"
    # csv columns: new_tokens,rows,prompt_len,warmup,reps,ms_per_call,tokens_per_s
    # joined on new_tokens: dynrl $2-$7, PyTorch $8-$13
    join -t, <(tail -n +2 "$tmp/dynrl_rollout.csv" | sort) <(tail -n +2 "$tmp/torch_rollout.csv" | sort) |
      sort -t, -k1,1n |
      awk -F, '{ if ($2 != $8 || $3 != $9 || $5 != $11)
                   printf "side_by_side: %s new tokens differ between the two sides\n", $1 > "/dev/stderr"
                 printf "| %s | %s | %s | %.2f | %.2f | %.0f | %.0f | %.2f |\n",
                        $1, $2, $5, $6, $12, $7, $13, $7 / $13 }'
    echo
  } >> "$report"
}

for s in $sections; do "run_$s"; done
cat "$report"
if [ -n "$append" ]; then
  cat "$report" >> "$append"
  echo "appended to $append"
fi
