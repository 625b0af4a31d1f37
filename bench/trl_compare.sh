#!/usr/bin/env bash
# A GRPO iteration against TRL's GRPOTrainer on the CPU, the same policy and settings, back to back on the same cores:
# bench_grpo (plain GRPO, d3s.sampling=none, and D3S, each from the checkpoint's weights) and
# bench/reference/trl_grpo_ref.py on the checkpoint exported by `dynrl export` (8 prompts x 16 completions of up to 16
# tokens, beta 0, loss_type dapo = token mean, scale_rewards group, AdamW lr 1e-4). Prints one table; with --append
# FILE also appends it (docs/benchmarks.md). A few minutes on 2 cores.
#
#   bench/trl_compare.sh --init CKPT.h5 [--build DIR] [--python PY] [--threads N] [--iters N] [--append FILE]
# CKPT.h5: a checkpoint of the default job (the sort task), e.g. run/ckpt.h5 after `dynrl train`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/cpu
python=$root/.venv/bin/python
threads=2
iters=10
init=""
append=""
while [ $# -gt 0 ]; do
  case "$1" in
    --init) init=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --append) append=$2; shift 2 ;;
    *) echo "usage: bench/trl_compare.sh --init CKPT.h5 [--build DIR] [--python PY] [--threads N] [--iters N]" \
            "[--append FILE]" >&2
       exit 2 ;;
  esac
done
[ -n "$init" ] || { echo "trl_compare.sh: --init CKPT.h5 is required" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads OMP_WAIT_POLICY=passive
"$build/cli/dynrl" export "$init" -o "$tmp/hf" --dtype fp32 >&2
"$build/bench/bench_grpo" --init "$init" --iters "$iters" --set d3s.sampling=none --set run.threads="$threads" \
  --csv "$tmp/grpo.csv" >&2
"$build/bench/bench_grpo" --init "$init" --iters "$iters" --set run.threads="$threads" --csv "$tmp/d3s.csv" >&2
"$python" "$root/bench/reference/trl_grpo_ref.py" --model "$tmp/hf" --threads "$threads" --iters "$iters" \
  --csv "$tmp/trl.csv" >&2
trl_ms=$(tail -n 1 "$tmp/trl.csv" | cut -d, -f2)
row() { # label, csv, path
  local ms
  ms=$(grep "^$3," "$2" | cut -d, -f2)
  echo "| $1 | $ms | $(awk -v t="$trl_ms" -v m="$ms" 'BEGIN{printf "%.2f", t / m}') |"
}
versions=$("$python" -c 'import torch, transformers, trl; print(f"TRL {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")')
report="### A GRPO iteration against TRL's GRPOTrainer (bench/trl_compare.sh)

$(lscpu | sed -n 's/^Model name: *//p' | head -1), $threads threads each side; $(date -u +%Y-%m-%d); commit $(git -C "$root" rev-parse --short HEAD); $versions, float32 on the CPU. The same policy ($(basename "$init"), exported with \`dynrl export\`), 8 prompts x 16 completions of up to 16 tokens, temperature 1, beta 0, token-mean loss (TRL loss_type dapo), group-std advantages (scale_rewards group), clip 0.2 / 0.28, AdamW lr 1e-4, one optimizer step per generation; the sort task's exact-match reward on both sides. Median TRL step and mean dynrl iteration after warm-up, $iters timed each.

| side | ms per iteration | TRL / this |
|---|---|---|
| TRL GRPOTrainer | $trl_ms | 1.00 |
$(row "dynrl plain GRPO (d3s.sampling=none)" "$tmp/grpo.csv" pruned)
$(row "dynrl plain GRPO, padded update" "$tmp/grpo.csv" padded)
$(row "dynrl GRPO + D³S" "$tmp/d3s.csv" pruned)
"
echo "$report"
[ -n "$append" ] && echo "$report" >> "$append"
exit 0
