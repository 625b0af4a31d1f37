#!/usr/bin/env bash
# Load balancing of an MoE policy end to end (DESIGN §12, issue "MoE"): the default policy with every block an MoE
# FFN (8 experts, top 2, each expert d_ff / 2 wide: the dense FFN's active parameters), trained on `add` by SFT then
# GRPO + D3S, with
#   aux_free    the bias on the selection, u = 1e-3 (sign rule), updated after every optimizer step (RL phase 1e-3 too)
#   aux_loss    Switch/GShard alpha E sum_i f_i P_i, alpha = 1e-2 and 1e-3
#   none        no balancing
# and the same seed, data and steps. Reads every run's metrics.h5 and prints one markdown table: MaxVio_global on the
# held-out examples' tokens (prompt + answer, teacher-forced, with the final bias) after SFT and at the end,
# MaxVio_batch averaged over the last 100 SFT steps, the held-out cross-entropy after SFT and at the end, and the
# held-out exact match (the CLI's greedy evaluation). With --append FILE the table is appended to FILE. Figures only.
#
#   bench/moe_compare.sh [--build DIR] [--python PY] [--sft N] [--grpo N] [--seed S] [--out DIR] [--append FILE]
#
# Defaults: build/default, .venv/bin/python, 1500 SFT steps, 100 GRPO iterations, seed 1234, a temporary out dir.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/default
python=$root/.venv/bin/python
sft=1500
grpo=100
seed=1234
out=""
append=""
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { echo "usage: $0 [--build DIR] [--python PY] [--sft N] [--grpo N] [--seed S] [--out DIR] [--append FILE]" >&2; exit 2; }
  case "$1" in
    --build) build=$2 ;;
    --python) python=$2 ;;
    --sft) sft=$2 ;;
    --grpo) grpo=$2 ;;
    --seed) seed=$2 ;;
    --out) out=$2 ;;
    --append) append=$2 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
keep=1
[ -n "$out" ] || { out=$(mktemp -d); keep=0; }
mkdir -p "$out"
trap '[ "$keep" = 1 ] || rm -rf "$out"' EXIT
dynrl=$build/cli/dynrl

common=(--set model.ffn=moe --set moe.experts=8 --set moe.top_k=2 --set sft.steps="$sft" --set grpo.steps="$grpo"
        --set run.seed="$seed" --set trainer.eval_every=250 --set trainer.ckpt_every=0 --set run.threads=2
        --set run.log_every=100)
declare -A runs=(
  [aux_free]="--set moe.balance=aux_free --set moe.bias_rate=0.001 --set moe.rl_bias_rate=0.001"
  [aux_loss_1e-2]="--set moe.balance=aux_loss --set moe.aux_alpha=0.01"
  [aux_loss_1e-3]="--set moe.balance=aux_loss --set moe.aux_alpha=0.001"
  [none]="--set moe.balance=none"
)
order=(aux_free aux_loss_1e-2 aux_loss_1e-3 none)
for name in "${order[@]}"; do
  # shellcheck disable=SC2086
  "$dynrl" train "${common[@]}" ${runs[$name]} --set run.out_dir="$out/$name" > "$out/$name.log" 2>&1
  echo "moe_compare: $name done" >&2
done

table=$("$python" - "$out" "$sft" "${order[@]}" <<'EOF'
import sys, re, h5py, numpy as np
out, sft, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("| balancing | MaxVio_global after SFT | MaxVio_global at the end | MaxVio_batch, last 100 SFT steps "
      "| held-out loss after SFT | held-out loss at the end | exact match after SFT / at the end |")
print("|---|---|---|---|---|---|---|")
for n in names:
    m = h5py.File(f"{out}/{n}/metrics.h5", "r")["metrics"]
    g, hl, mb = m["moe_maxvio_global"][:], m["heldout_loss"][:], m["moe_maxvio_batch"][:]
    log = open(f"{out}/{n}.log").read()
    acc = re.search(r"held-out exact match: ([0-9.]+) before, ([0-9.]+) after sft, ([0-9.]+) after training", log)
    accs = f"{acc.group(2)} / {acc.group(3)}" if acc else "?"
    print(f"| {n} | {g[sft-1]:.3f} | {g[-1]:.3f} | {np.nanmean(mb[sft-100:sft]):.3f} | {hl[sft-1]:.4f} | "
          f"{hl[-1]:.4f} | {accs} |")
EOF
)
report=$(
  echo "### MoE load balancing end to end (bench/moe_compare.sh)"
  echo
  echo "$(date -u +%F), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), CPU backend," \
       "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores; seed $seed, $sft SFT steps" \
       "then $grpo GRPO iterations on \`add\`, 4 MoE blocks of 8 experts (top 2)."
  echo
  echo "$table"
)
echo "$report"
if [ -n "$append" ]; then printf '\n%s\n' "$report" >> "$append"; fi
