#!/usr/bin/env python3
"""Draws PNG curves from a dynrl metrics file.

usage: scripts/plot_metrics.py RUN/metrics.h5 [-o OUT_DIR] [--metrics loss,reward_mean]

Writes one PNG per metric (OUT_DIR/<metric>.png) and an overview grid (OUT_DIR/metrics.png); metrics that are NaN
at every step (not logged by the phases that ran) are skipped. The file may be open by a running trainer: it is read
in SWMR mode. Needs numpy, h5py, matplotlib (scripts/install-deps.sh --python).
"""
import argparse
import math
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read(path):
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        if "metrics" not in f or "step" not in f["metrics"]:
            sys.exit(f"{path}: no /metrics/step: not a dynrl metrics file")
        group = f["metrics"]
        steps = group["step"][()]
        series = {name: group[name][()] for name in group if name != "step"}
    return steps, series


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics_file")
    ap.add_argument("-o", "--out", help="output directory (default: beside the metrics file)")
    ap.add_argument("--metrics", help="comma-separated names to draw (default: all)")
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

    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    grid, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for i, name in enumerate(names):
        y = series[name]
        ok = np.isfinite(y)
        for ax, fig in ((axes[i // cols][i % cols], None), (None, plt.figure(figsize=(6, 4)))):
            ax = ax if ax is not None else fig.gca()
            ax.plot(steps[ok], y[ok], marker="." if ok.sum() < 50 else None)
            ax.set_title(name)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if fig is not None:
                fig.tight_layout()
                fig.savefig(os.path.join(out, f"{name}.png"), dpi=100)
                plt.close(fig)
    for j in range(len(names), rows * cols):
        axes[j // cols][j % cols].axis("off")
    grid.tight_layout()
    grid.savefig(os.path.join(out, "metrics.png"), dpi=100)
    print(f"wrote {len(names)} curves and metrics.png to {out}")


if __name__ == "__main__":
    main()
