#!/usr/bin/env bash
# Tree-structured SDE sampling against independent trajectories on flow2d (DESIGN §6, issue "flow-matching policies",
# research note D.8). One flow-matching pretraining (configs/flow2d_tree.yaml's network, seed 1234), then flow_grpo
# from that checkpoint with each sampler, the same learning rate, conditions and evaluation, for every seed:
#   tree         one root per condition, ODE prefix, binary tree of depth 4 in a window sliding every 15 iterations
#                (noise growing with depth), ODE suffix: 16 leaves per group
#   independent  Flow-GRPO: 16 independent trajectories per condition, every one of the T = 10 steps an SDE step
#                and trained
#   mixgrpo      MixGRPO: 16 trajectories from one shared noise, SDE (and training) only in the sliding window of 4
# NFEs are network evaluations (one per point per call) of sampling plus the training pass (research note D.2.6),
# counted by the sampler and accumulated in metrics.h5 (nfe_total); the evaluation (tree.eval_samples ODE samples per
# condition every 5 iterations) is not counted. Prints a markdown table: NFEs to reach the target eval reward (first
# evaluation at or above it), eval reward at the NFE budget (the last evaluation within it), wall time per iteration
# (sampling + update, no evaluation), the within-group leaf-reward std of the first 20 iterations, and the tree's
# NFE ratios. With --append FILE the table is appended to FILE. Figures only: no pass/fail.
#
#   bench/tree_compare.sh [--build DIR] [--python PY] [--seeds "1 2 3"] [--iterations N] [--target R]
#                         [--budget NFE] [--out DIR] [--append FILE]
#
# Defaults: build/default, .venv/bin/python, seeds 1 2 3, 150 iterations, target 0.8, budget 40000 NFEs, a
# temporary out dir.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/default
python=$root/.venv/bin/python
seeds="1 2 3"
iterations=150
target=0.8
budget=40000
out=""
append=""
usage="usage: $0 [--build DIR] [--python PY] [--seeds LIST] [--iterations N] [--target R] [--budget NFE] [--out DIR] [--append FILE]"
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
  case "$1" in
    --build) build=$2 ;;
    --python) python=$2 ;;
    --seeds) seeds=$2 ;;
    --iterations) iterations=$2 ;;
    --target) target=$2 ;;
    --budget) budget=$2 ;;
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
cfg=$root/configs/flow2d_tree.yaml

"$dynrl" train "$cfg" --set trainer.phases=flow_pretrain --set run.out_dir="$out/pretrain" --set run.seed=1234 \
  --set trainer.ckpt_every=0 --set run.log_every=1000 > "$out/pretrain.log" 2>&1
echo "tree_compare: pretraining done" >&2

declare -A methods=(
  [tree]="--set tree.sampling=tree --set tree.depth=4 --set tree.window_every=15"
  [independent]="--set tree.sampling=independent --set tree.group_size=16 --set tree.depth=10 --set tree.window_start=0 --set tree.window_every=0"
  [mixgrpo]="--set tree.sampling=independent --set tree.group_size=16 --set tree.shared_noise=true --set tree.depth=4 --set tree.window_every=15"
)
order=(tree independent mixgrpo)
for seed in $seeds; do
  for name in "${order[@]}"; do
    # shellcheck disable=SC2086
    "$dynrl" train "$cfg" --set trainer.phases=flow_grpo --set trainer.init_from="$out/pretrain/ckpt.h5" \
      --set run.seed="$seed" --set tree.iterations="$iterations" --set tree.eval_every=5 --set trainer.ckpt_every=0 \
      --set run.log_every=1000 ${methods[$name]} --set run.out_dir="$out/$name-$seed" > "$out/$name-$seed.log" 2>&1
    echo "tree_compare: $name seed $seed done" >&2
  done
done

table=$("$python" - "$out" "$target" "$budget" "$seeds" "${order[@]}" <<'EOF'
import sys, h5py, numpy as np
out, target, budget, seeds, names = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4].split(), sys.argv[5:]
res = {}
for n in names:
    rows = []
    for s in seeds:
        m = h5py.File(f"{out}/{n}-{s}/metrics.h5", "r")["metrics"]
        ev, nfe, sec, std = m["eval_reward"][:], m["nfe_total"][:], m["step_seconds"][:], m["reward_std"][:]
        # the evaluation before the first iteration is not a row: the first row's eval is after 5 iterations
        have = ~np.isnan(ev)
        hit = np.nonzero(have & (ev >= target))[0]
        to_target = nfe[hit[0]] if len(hit) else np.nan
        within = np.nonzero(have & (nfe <= budget))[0]
        at_budget = ev[within[-1]] if len(within) else np.nan
        rows.append((to_target, at_budget, np.nanmean(sec), np.nanmean(std[:20]), ev[have][-1], nfe[-1]))
    res[n] = np.array(rows, dtype=float)
def fmt(v, f):
    return "not reached" if np.isnan(v) else f % v
print(f"| sampler | NFEs to eval reward {target} (per seed) | mean | eval reward at {int(budget)} NFEs (per seed) "
      "| wall s / iteration | leaf-reward std, first 20 iterations | final eval reward | NFEs of the run |")
print("|---|---|---|---|---|---|---|---|")
for n in names:
    r = res[n]
    per = ", ".join(fmt(v, "%.0f") for v in r[:, 0])
    mean = fmt(np.mean(r[:, 0]) if not np.isnan(r[:, 0]).any() else np.nan, "%.0f")
    bud = ", ".join(fmt(v, "%.3f") for v in r[:, 1])
    print(f"| {n} | {per} | {mean} | {bud} | {np.mean(r[:, 2]):.4f} | {np.mean(r[:, 3]):.3f} | "
          f"{np.mean(r[:, 4]):.3f} | {np.mean(r[:, 5]):.0f} |")
t = res["tree"][:, 0]
for other in [n for n in names if n != "tree"]:
    o = res[other][:, 0]
    if np.isnan(t).any() or np.isnan(o).any():
        print(f"\ntree / {other} NFEs to target: not computable (a run did not reach the target)")
    else:
        print(f"\ntree / {other} NFEs to target: {np.mean(t) / np.mean(o):.2f} (mean over seeds; per seed "
              + ", ".join("%.2f" % (a / b) for a, b in zip(t, o)) + ")")
EOF
)
report=$(
  echo "### Tree vs independent trajectories on flow2d (bench/tree_compare.sh)"
  echo
  echo "$(date -u +%F), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), CPU backend" \
       "(one thread), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); configs/flow2d_tree.yaml's" \
       "network pretrained once (3000 flow-matching steps, seed 1234), then $iterations flow_grpo iterations of 4" \
       "conditions per sampler and seed (seeds $seeds), T = 10, a = 0.7, lr 1e-3."
  echo
  echo "$table"
)
echo "$report"
if [ -n "$append" ]; then printf '\n%s\n' "$report" >> "$append"; fi
