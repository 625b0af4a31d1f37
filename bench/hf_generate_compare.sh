#!/usr/bin/env bash
# Rollout against Hugging Face transformers' generate() on the same weights, side by side, on the same cores:
# bench_rollout times drl_rollout_generate and writes its policy (EOS made unreachable) as a Hugging Face directory
# (--export), then bench/reference/hf_generate_ref.py times generate() on that directory: 8 prompts x
# num_return_sequences 16 = 128 rows, temperature 1, top_k 0, min_new_tokens = max_new_tokens, log-prob and entropy
# of every token on both sides. The default policy at prompts of 16 and 64 tokens and 16, 64, 256 and 1,024 new
# tokens; the 27M-parameter policy (bench_rollout --large) at prompts of 16 and 16, 64 and 256 new tokens. Prints one
# table with both figures and the ratio; with --append FILE also appends it (docs/benchmarks.md). Several minutes on
# 2 cores.
#
#   bench/hf_generate_compare.sh [--build DIR] [--python PY] [--threads N] [--append FILE]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/cpu
python=$root/.venv/bin/python
threads=2
append=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --append) append=$2; shift 2 ;;
    *) echo "usage: bench/hf_generate_compare.sh [--build DIR] [--python PY] [--threads N] [--append FILE]" >&2
       exit 2 ;;
  esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads OMP_WAIT_POLICY=passive
table="| policy | prompt | new tokens | dynrl ms/call | generate() ms/call | dynrl tokens/s | generate() tokens/s | dynrl / generate() |
|---|---|---|---|---|---|---|---|"
run() { # name, bench_rollout size flag ("" or --large), prompt length, lengths
  local name=$1 size=$2 prompt=$3 lengths=$4 dir=$tmp/$1_$3
  "$build/bench/bench_rollout" $size --prompt-len "$prompt" --lengths "$lengths" --export "$dir" \
    --csv "$tmp/dynrl.csv" >&2
  "$python" "$root/bench/reference/hf_generate_ref.py" --model "$dir" --prompt-len "$prompt" --lengths "$lengths" \
    --threads "$threads" --csv "$tmp/hf.csv" >&2
  # csv columns: new_tokens,rows,prompt_len,warmup,reps,ms_per_call,tokens_per_s
  while IFS=, read -r n _ _ _ _ ms tps && IFS=, read -r _ _ _ _ _ hms htps <&3; do
    table+=$'\n'"| $name | $prompt | $n | $(awk -v a="$ms" -v b="$hms" -v c="$tps" -v d="$htps" \
      'BEGIN{printf "%.1f | %.1f | %.0f | %.0f | %.2f", a, b, c, d, b / a}') |"
  done < <(tail -n +2 "$tmp/dynrl.csv") 3< <(tail -n +2 "$tmp/hf.csv")
}
run "1.05M (default)" "" 16 16,64,256,1024
run "1.05M (default)" "" 64 16,64,256,1024
run "27M (--large)" --large 16 16,64,256
versions=$("$python" -c 'import torch, transformers; print(f"transformers {transformers.__version__}, torch {torch.__version__}")')
report="### Rollout against transformers generate() on the same weights (bench/hf_generate_compare.sh)

$(lscpu | sed -n 's/^Model name: *//p' | head -1), $threads threads each side; $(date -u +%Y-%m-%d); commit $(git -C "$root" rev-parse --short HEAD); $versions, float32, dynamic KV cache. 8 prompts x 16 return sequences = 128 rows, temperature 1, top_k 0, min_new_tokens = max_new_tokens, log-prob and entropy of every token on both sides. Median call.

$table
"
echo "$report"
[ -n "$append" ] && echo "$report" >> "$append"
exit 0
