#!/usr/bin/env bash
# Algorithm comparison (DESIGN §12, issue "RL core"): D3S vs plain GRPO vs PODS, the same seeds, iterations and
# learning rate for all three, on two built-in tasks:
#   keyfork  the D3S scenario of research/d3s-and-treerpo.md B.8 (few decisive tokens among filler), on a small policy
#            (d_model 64, 2 layers, d_ff 256); data.size (Q, distinct prompts) 6 by default, see "Choices" below;
#   add      3-digit addition on the default policy.
# Each task and seed gets one short SFT run (the format, not the task; run.seed = the seed); the three methods of
# that seed then continue from that one checkpoint into the grpo phase (see "Start" below) with:
#   grpo  d3s.sampling=none                       all G = 16 rollouts, all tokens
#   pods  d3s.sampling=pods, n 8 -> 8 of 16        reward-variance subset, advantages re-normalised, all its tokens
#   d3s   d3s.sampling=d3s (defaults)              cross-group max-variance subset N_s 4 -> 8, top-K |A| x H tokens,
#                                                  K 0.2 -> 0.5
# Then reads every run's metrics.h5 and prints one markdown table; with --append FILE the table is also appended to
# FILE (e.g. docs/benchmarks.md) under a header line (machine, date, commit). Figures only: nothing is asserted.
#
#   bench/d3s_compare.sh [--build DIR] [--python PY] [--seeds "1 2 3"] [--out DIR] [--append FILE]
#                        [--kf-steps N] [--kf-sft N] [--kf-lr X] [--kf-target R] [--kf-size Q]
#                        [--add-steps N] [--add-sft N] [--add-lr X] [--add-target R] [--threads N]
#
# Defaults: build/default, .venv/bin/python, seeds 1 2 3, out = a fresh temporary directory (removed at the end
# unless --out is given), keyfork 300 iterations from an 80-step SFT at lr 6e-4, target 0.4; add 80 iterations
# from a 600-step SFT at lr 3e-4, target 0.2; 2 threads. About 8-10 minutes on 2 cores.
#
# Metrics. "Reward" is the training batch's mean reward (8 prompts x 16 rollouts, sampled at temperature 1),
# smoothed by a trailing mean over 10 iterations. Steps to target: the first iteration whose smoothed reward reaches
# the target. Loss tokens: the tokens in the policy-gradient loss (backward-pass tokens; metrics loss_tokens =
# kept_tokens x ppo_epochs), summed up to that iteration. Final reward: the smoothed reward at the last iteration.
# Held-out: greedy exact match on data.n_eval held-out prompts, after SFT and after the grpo phase (the CLI's log).
#
# Start. Every method resumes the task's SFT checkpoint (weights AND AdamW moments) with trainer.phases=sft,grpo, i.e.
# exactly what one `phases=[sft, grpo]` invocation does after its SFT phase. Starting instead from
# trainer.init_from (weights only, fresh AdamW) made the first GRPO update lr * sign(g) on every weight (the grpo
# phase has no learning-rate warm-up) and collapsed the keyfork policy to early EOS in pilot runs at every lr that
# learned at all; all three methods collapsed alike, so that comparison measured nothing.
#
# Choices (keyfork). B.8 uses Q = 32 prompts. With the prompt spelled as two decimal digits, Q = 32 asks the
# policy to compute q mod 6 from them: in pilots even SFT on the answers reached only 42% after 600 steps on this
# model, and GRPO never learned the forks. Q = 6 keeps B.8's structure (format on 10 filler tokens, two forks whose
# sum must match the prompt) with a mapping the model can learn; --kf-size 32 runs B.8's size.
set -euo pipefail

usage() {
  echo "usage: $0 [--build DIR] [--python PY] [--seeds \"1 2 3\"] [--out DIR] [--append FILE] [--threads N]" \
       "[--kf-steps N] [--kf-sft N] [--kf-lr X] [--kf-target R] [--kf-size Q]" \
       "[--add-steps N] [--add-sft N] [--add-lr X] [--add-target R]" >&2
  exit 2
}

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/default
python=$root/.venv/bin/python
seeds="1 2 3"
out=""
append=""
threads=2
kf_steps=300 kf_sft=80 kf_lr=0.0006 kf_target=0.4 kf_size=6
add_steps=80 add_sft=600 add_lr=0.0003 add_target=0.2
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage
  case "$1" in
    --build) build=$2 ;;
    --python) python=$2 ;;
    --seeds) seeds=$2 ;;
    --out) out=$2 ;;
    --append) append=$2 ;;
    --threads) threads=$2 ;;
    --kf-steps) kf_steps=$2 ;;
    --kf-sft) kf_sft=$2 ;;
    --kf-lr) kf_lr=$2 ;;
    --kf-target) kf_target=$2 ;;
    --kf-size) kf_size=$2 ;;
    --add-steps) add_steps=$2 ;;
    --add-sft) add_sft=$2 ;;
    --add-lr) add_lr=$2 ;;
    --add-target) add_target=$2 ;;
    *) usage ;;
  esac
  shift 2
done
dynrl=$build/cli/dynrl
[ -x "$dynrl" ] || { echo "$0: $dynrl not found (cmake --build --preset default --target dynrl)" >&2; exit 1; }
"$python" -c "import h5py, numpy" 2>/dev/null || { echo "$0: $python cannot import h5py and numpy" >&2; exit 1; }
if [ -z "$out" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Per task: the model and data overrides, the GRPO length cap, SFT steps, iterations, lr and target.
common=(--set run.threads="$threads" --set run.log_every=1000000 --set trainer.ckpt_every=0 --set trainer.eval_every=0)
task_args() {
  case "$1" in
    keyfork) echo "--set data.task=keyfork --set data.size=$kf_size --set data.n_train=2000 --set data.n_eval=256" \
                  "--set model.d_model=64 --set model.n_layers=2 --set model.d_ff=256 --set grpo.max_new_tokens=13" \
                  "--set optim.warmup_steps=5 --set sft.steps=$kf_sft --set grpo.steps=$kf_steps" \
                  "--set grpo.lr=$kf_lr" ;;
    add) echo "--set data.task=add --set sft.steps=$add_sft --set grpo.steps=$add_steps --set grpo.lr=$add_lr" ;;
  esac
}
method_args() {
  case "$1" in
    grpo) echo "--set d3s.sampling=none" ;;
    pods) echo "--set d3s.sampling=pods --set d3s.n_init=8 --set d3s.n_final=8 --set d3s.token_level=false" ;;
    d3s) echo "--set d3s.sampling=d3s" ;;
  esac
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date +%s)
for task in keyfork add; do
  read -r -a targs <<< "$(task_args "$task")"
  mkdir -p "$out/$task"
  for seed in $seeds; do
    sft=$out/$task/sft-$seed
    rm -rf "$sft"
    echo "[$task] seed $seed: SFT -> $sft" >&2
    "$dynrl" train "${targs[@]}" "${common[@]}" --set trainer.phases=sft --set run.seed="$seed" \
      --set run.out_dir="$sft" > "$sft.log" 2>&1 || { cat "$sft.log" >&2; exit 1; }
    for method in grpo pods d3s; do
      read -r -a margs <<< "$(method_args "$method")"
      dir=$out/$task/$method-$seed
      rm -rf "$dir"
      mkdir -p "$dir"
      cp "$sft/ckpt.h5" "$sft/metrics.h5" "$dir/"
      t0=$(date +%s.%N)
      "$dynrl" train "${targs[@]}" "${common[@]}" "${margs[@]}" --set trainer.phases=sft,grpo \
        --set trainer.resume=true --set run.seed="$seed" --set run.out_dir="$dir" > "$dir/log" 2>&1 ||
        { cat "$dir/log" >&2; exit 1; }
      t1=$(date +%s.%N)
      echo "$t0 $t1" | awk '{ printf "%.2f\n", $2 - $1 }' > "$dir/seconds"
      echo "[$task] $method seed $seed: $(cat "$dir/seconds") s" >&2
    done
  done
done
t_total=$(( $(date +%s) - t_start ))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
commit=${DRL_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}
report=$out/report.md
OUT=$out SEEDS=$seeds KF_TARGET=$kf_target ADD_TARGET=$add_target KF_STEPS=$kf_steps ADD_STEPS=$add_steps \
KF_SFT=$kf_sft ADD_SFT=$add_sft KF_LR=$kf_lr ADD_LR=$add_lr KF_SIZE=$kf_size THREADS=$threads \
HEADER="${cpu:-unknown CPU}, $(nproc) cores; backend cpu, $threads threads; $(date -u +%Y-%m-%d); commit $commit; $t_total s in all; load average before / after: $load_before / $load_after" \
"$python" - > "$report" <<'EOF'
import os, re
import h5py
import numpy as np

out, seeds = os.environ["OUT"], os.environ["SEEDS"].split()
E = os.environ
tasks = [
    ("keyfork", float(E["KF_TARGET"]), int(E["KF_STEPS"]),
     f"keyfork (Q = {E['KF_SIZE']}; d_model 64, 2 layers; SFT {E['KF_SFT']} steps; lr {E['KF_LR']})"),
    ("add", float(E["ADD_TARGET"]), int(E["ADD_STEPS"]),
     f"add (default policy; SFT {E['ADD_SFT']} steps; lr {E['ADD_LR']})"),
]
methods = [("grpo", "GRPO (all 16, all tokens)"), ("pods", "PODS (8 of 16, re-normalised)"),
           ("d3s", "D³S (N 4→8 of 16, K 0.2→0.5)")]
SMOOTH = 10


def one(task, method, seed, target):
    d = f"{out}/{task}/{method}-{seed}"
    with h5py.File(f"{d}/metrics.h5", "r") as f:
        m = f["/metrics"]
        g = m["phase"][()] == 1  # the grpo rows (the copied SFT rows come first)
        col = lambda k: m[k][()][g]
        reward, loss_tok = col("reward_mean"), col("loss_tokens")
        kept_s, useful = col("kept_samples"), col("usefulness")
    smooth = np.array([reward[max(0, i - SMOOTH + 1):i + 1].mean() for i in range(len(reward))])
    hit = np.nonzero(smooth >= target)[0]
    cum = np.cumsum(loss_tok)
    log = open(f"{d}/log").read()
    before = re.findall(r"held-out exact match after sft: ([0-9.]+)", log)
    after = re.findall(r"held-out exact match after training: ([0-9.]+)", log)
    return dict(steps=int(hit[0]) + 1 if len(hit) else None, tokens=float(cum[hit[0]]) if len(hit) else None,
                total=float(cum[-1]), final=float(smooth[-1]), start=float(smooth[min(SMOOTH, len(smooth)) - 1]),
                best=float(smooth.max()), acc0=float(before[-1]) if before else float("nan"),
                acc=float(after[-1]) if after else float("nan"), kept=float(kept_s.mean()),
                useful=float(np.nanmean(useful)), secs=float(open(f"{d}/seconds").read()), iters=len(reward))


def stat(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    s = fmt.format(np.mean(xs))
    return s if len(xs) == 1 or min(xs) == max(xs) else f"{s} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def ktok(x):
    return None if x is None else x / 1e3


print("### Algorithm comparison: D³S vs GRPO vs PODS (bench/d3s_compare.sh)\n")
print(E["HEADER"] + "\n")
print(f"`dynrl train` GRPO phase, 8 prompts x G = 16 rollouts per iteration, one update per iteration (ppo_epochs 1, "
      f"1 minibatch), token-mean loss, clip 0.2/0.28, temperature 1; seeds {' '.join(seeds)} (run.seed: prompt order "
      f"and rollout streams), the seed's SFT checkpoint (weights and AdamW moments) for all three methods. Reward: the training "
      f"batch's mean, trailing mean over {SMOOTH} iterations. Loss tokens: tokens in the policy-gradient loss "
      f"(backward-pass tokens), in thousands. Mean over seeds (min–max); \"reached\" counts the seeds whose smoothed "
      f"reward reached the target within the run; steps and tokens to the target average over those.\n")
print("| task (target) | method | reached | steps to target | loss tokens to target (k) | ratio to GRPO (to target) "
      "| loss tokens in run (k) | ratio to GRPO (run) | reward start → final | best | held-out before → after "
      "| kept rows/iter | usefulness | s/run |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for task, target, steps, desc in tasks:
    res = {m: [one(task, m, s, target) for s in seeds] for m, _ in methods}
    g_tok = [r["tokens"] for r in res["grpo"] if r["tokens"] is not None]
    g_tot = np.mean([r["total"] for r in res["grpo"]])
    for m, label in methods:
        rs = res[m]
        toks = [r["tokens"] for r in rs if r["tokens"] is not None]
        ratio = f"{np.mean(toks) / np.mean(g_tok):.3f}" if toks and g_tok else "—"
        print(f"| {desc}, target {target:g} | {label} | {len(toks)}/{len(rs)} | {stat([r['steps'] for r in rs], '{:.0f}')} "
              f"| {stat([ktok(r['tokens']) for r in rs], '{:.1f}')} | {ratio} "
              f"| {stat([ktok(r['total']) for r in rs], '{:.0f}')} | {np.mean([r['total'] for r in rs]) / g_tot:.3f} "
              f"| {np.mean([r['start'] for r in rs]):.3f} → {stat([r['final'] for r in rs], '{:.3f}')} "
              f"| {stat([r['best'] for r in rs], '{:.3f}')} "
              f"| {np.mean([r['acc0'] for r in rs]):.3f} → {stat([r['acc'] for r in rs], '{:.3f}')} "
              f"| {np.mean([r['kept'] for r in rs]):.1f} | {np.mean([r['useful'] for r in rs]):.2f} "
              f"| {np.mean([r['secs'] for r in rs]):.1f} |")
print(f"\nIterations per run: keyfork {tasks[0][2]}, add {tasks[1][2]}. Usefulness: share of kept rows with a non-zero "
      f"advantage. s/run: wall clock of one `dynrl train` (GRPO phase plus the held-out evaluations).")
EOF
cat "$report"
if [ -n "$append" ]; then
  { cat "$report"; echo; } >> "$append"
  echo "appended to $append"
fi
