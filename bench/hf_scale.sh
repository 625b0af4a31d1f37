#!/usr/bin/env bash
# Pretrained policies at scale on the CPU (issue "pretrained policies", item 7): a random checkpoint of
# Qwen2.5-0.5B's shapes, written by bench/reference/hf_fixtures.py --scale DIR (494M parameters, bf16, 988 MB, not
# committed), then
#   1. bench_load: loading it into fp32 against reading the same bytes, and the peak resident memory;
#   2. bench_memory: the memory table of 0.5B and 1.5B shapes;
#   3. one SFT step and one GRPO iteration at a small batch (dynrl train with trainer.init_from=DIR): step times from
#      metrics.h5 and the peak resident memory (/usr/bin/time), checked against the policy and rollout memory the run
#      logs (the same accounting as the table).
# Figures only: nothing is asserted. Prints markdown; with --append FILE also appends it (docs/benchmarks.md).
#
#   bench/hf_scale.sh --model DIR [--build DIR] [--append FILE]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/cpu
model=""
append=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --append) append=$2; shift 2 ;;
    *) echo "usage: bench/hf_scale.sh --model DIR [--build DIR] [--append FILE]" >&2; exit 2 ;;
  esac
done
[ -n "$model" ] || { echo "hf_scale.sh: --model DIR is required (bench/reference/hf_fixtures.py --scale DIR)" >&2; exit 2; }
extra=()
[ -n "$append" ] && extra=(--append "$append")
"$build/bench/bench_load" --model "$model" "${extra[@]}"
"$build/bench/bench_memory" "${extra[@]}"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sets=(trainer.init_from="$model" sft.steps=1 sft.batch_size=2 grpo.steps=1 grpo.prompts_per_step=1
      grpo.group_size=4 d3s.n_init=2 d3s.n_final=4 data.n_eval=2 data.n_train=64 trainer.eval_every=0
      trainer.ckpt_every=0 run.out_dir="$out/run")
args=(train)
for s in "${sets[@]}"; do args+=(--set "$s"); done
/usr/bin/time -v "$build/cli/dynrl" "${args[@]}" >"$out/log" 2>&1
peak_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/log")
policy_mb=$(sed -n 's/.*policy memory: parameters \([0-9]*\) MB, gradients \([0-9]*\) MB, AdamW \([0-9]*\) MB, activations \([0-9]*\) MB.*/\1 \2 \3 \4/p' "$out/log" |
            awk '{print $1 + $2 + $3 + $4}')
rollout_mb=$(sed -n 's/.*rollout memory: KV cache and decode workspace \([0-9]*\) MB.*/\1/p' "$out/log" | head -1)
read -r sft_s grpo_s < <(h5dump -d /metrics/step_seconds "$out/run/metrics.h5" |
                         sed -n 's/^ *(0): \([0-9.e+-]*\), \([0-9.e+-]*\).*/\1 \2/p')
report=$(cat <<EOT
### One SFT step and one GRPO iteration of a Qwen2.5-0.5B-shaped policy on the CPU (bench/hf_scale.sh)

| SFT step (2 sequences) | GRPO iteration (1 prompt x 4 rollouts) | peak RSS | computed: policy + rollout | measured / computed |
|---|---|---|---|---|
| $sft_s s | $grpo_s s | $((peak_kb / 1000)) MB | $((policy_mb + rollout_mb)) MB | $(awk -v a="$peak_kb" -v b="$((policy_mb + rollout_mb))" 'BEGIN {printf "%.3f", a / 1000 / b}') |

The task is the built-in addition task: its 13-character vocabulary is the policy's vocab_used, so the LM head
scores 13 rows of the 151936 (real text comes with the tokenizer); $(nproc) cores.
EOT
)
echo "$report"
[ -n "$append" ] && printf '\n%s\n' "$report" >>"$append"
exit 0
