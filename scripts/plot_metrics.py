#!/usr/bin/env python3
"""Draws the curves of a dynrl metrics file.

usage: .venv/bin/python scripts/plot_metrics.py RUN/metrics.h5 [-o OUT_DIR] [--metrics loss,reward_mean] [--smooth N]

Writes an overview (OUT_DIR/overview.png: held-out evaluation across the phases, then the training curves a person
reads first) and one PNG per metric (OUT_DIR/<metric>.png). Curves are smoothed (a centred moving average over
--smooth steps, default 2% of the run) with the raw values faint behind them; phase boundaries are dashed lines
named after the phase; the evaluations (before training, every trainer.eval_every steps, after each phase) are
points labelled with their values. Metrics that are NaN at every step (not logged by the phases that ran) are
skipped. The file may be open by a running trainer: it is read in SWMR mode. Needs numpy, h5py and matplotlib:
scripts/install-deps.sh --python installs them in .venv.
"""
import argparse
import math
import os
import sys

try:
    import h5py
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
except ImportError as e:
    sys.exit(f"{e}: this script needs numpy, h5py and matplotlib; run scripts/install-deps.sh --python, then "
             f".venv/bin/python {' '.join(sys.argv)}")

PHASES = {0: "sft", 1: "grpo", 2: "flow_pretrain", 3: "flow_grpo"}
EVALS = ("eval_accuracy", "eval_reward")
# The overview's training curves, in this order, when the run logged them.
OVERVIEW = ("loss", "reward_mean", "entropy", "grad_norm", "clip_frac", "kept_tokens", "heldout_loss",
            "tokens_per_s")


def read(path):
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        if "metrics" not in f or "step" not in f["metrics"]:
            sys.exit(f"{path}: no /metrics/step: not a dynrl metrics file")
        group = f["metrics"]
        steps = group["step"][()]
        series = {name: group[name][()] for name in group if name != "step"}
    return steps, series


def smooth(y, window):
    """Centred moving average over the finite values (each point averages the finite ones in its window)."""
    ok = np.isfinite(y)
    if window <= 1 or ok.sum() < 3:
        return y
    v = np.where(ok, y, 0.0)
    k = np.ones(window)
    num = np.convolve(v, k, mode="same")
    den = np.convolve(ok.astype(float), k, mode="same")
    out = np.full_like(y, np.nan, dtype=float)
    out[ok] = num[ok] / den[ok]
    return out


def phase_spans(steps, phase):
    """[(name, first step, last step)] of the phases in order of the steps."""
    spans = []
    for s, p in zip(steps, phase):
        if not np.isfinite(p):
            continue
        name = PHASES.get(int(p), str(int(p)))
        if spans and spans[-1][0] == name:
            spans[-1][2] = s
        else:
            spans.append([name, s, s])
    return spans


def mark_phases(ax, spans, label=True):
    for i, (name, first, last) in enumerate(spans):
        if i > 0:
            ax.axvline(first - 0.5, color="0.4", linestyle="--", linewidth=0.8)
        if label:
            ax.text((first + last) / 2, 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=8, color="0.3")


def draw_curve(ax, steps, y, name, window, spans):
    ok = np.isfinite(y)
    if ok.sum() < 50:
        ax.plot(steps[ok], y[ok], marker=".", linewidth=1)
    else:
        ax.plot(steps[ok], y[ok], color="C0", alpha=0.25, linewidth=0.8)
        s = smooth(y, window)
        ax.plot(steps[ok], s[ok], color="C0", linewidth=1.6)
    ax.set_title(name, fontsize=10, pad=12)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    mark_phases(ax, spans, label=False)


def draw_evals(ax, steps, series, spans):
    """Held-out evaluation: a point per evaluation, labelled, joined across the phases."""
    drawn = False
    for name in EVALS:
        y = series.get(name)
        if y is None or not np.isfinite(y).any():
            continue
        ok = np.isfinite(y)
        ax.plot(steps[ok], y[ok], marker="o", linewidth=1.5, label=name)
        for s, v in zip(steps[ok], y[ok]):
            ax.annotate(f"{v:.3f}", (s, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        drawn = True
    ax.set_title("held-out evaluation", fontsize=11, pad=14)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    mark_phases(ax, spans)
    if drawn:
        ax.legend(fontsize=8, loc="lower right")
    return drawn


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics_file")
    ap.add_argument("-o", "--out", help="output directory (default: beside the metrics file)")
    ap.add_argument("--metrics", help="comma-separated names to draw one by one (default: all)")
    ap.add_argument("--smooth", type=int, help="moving-average window in steps (default: 2%% of the run, at least 1)")
    args = ap.parse_args()

    steps, series = read(args.metrics_file)
    out = args.out or os.path.dirname(os.path.abspath(args.metrics_file))
    os.makedirs(out, exist_ok=True)
    names = args.metrics.split(",") if args.metrics else sorted(series)
    missing = [n for n in names if n not in series]
    if missing:
        sys.exit(f"unknown metrics {missing}; the file has {sorted(series)}")
    names = [n for n in names if np.isfinite(series[n]).any()]
    if not names:
        sys.exit("no metric has a finite value yet")
    window = args.smooth or max(1, len(steps) // 50)
    spans = phase_spans(steps, series.get("phase", np.full(len(steps), np.nan)))

    for name in names:
        fig = plt.figure(figsize=(6, 4))
        if name in EVALS:
            draw_evals(fig.gca(), steps, {name: series[name]}, spans)
        else:
            draw_curve(fig.gca(), steps, series[name], name, window, spans)
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"{name}.png"), dpi=100)
        plt.close(fig)

    curves = [n for n in OVERVIEW if n in series and np.isfinite(series[n]).any()]
    cols = 3
    rows = 1 + math.ceil(len(curves) / cols)
    fig = plt.figure(figsize=(5 * cols, 3.3 * rows))
    grid = fig.add_gridspec(rows, cols)
    draw_evals(fig.add_subplot(grid[0, :]), steps, series, spans)
    for i, name in enumerate(curves):
        draw_curve(fig.add_subplot(grid[1 + i // cols, i % cols]), steps, series[name], name, window, spans)
    fig.suptitle(os.path.abspath(args.metrics_file), fontsize=9, color="0.4")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "overview.png"), dpi=100)
    plt.close(fig)
    print(f"wrote overview.png and {len(names)} curves to {out}")


if __name__ == "__main__":
    main()
