#!/usr/bin/env python3
"""Scatter plots of flow-policy samples written by `dynrl sample`, side by side (e.g. before and after GRPO).

    .venv/bin/python scripts/plot_samples.py before.h5 after.h5 -o scatter.png [--labels "flow_pretrain" "flow_grpo"]

Each panel shows the samples coloured by condition, every condition's mode centres (small crosses) and its reward
region around the target mode (circles at one and two reward widths), with the mean reward in the title.
Needs numpy, h5py and matplotlib (scripts/install-deps.sh --python puts them in .venv).
"""
import argparse
import os
import sys

try:
    import h5py
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    import numpy as np
except ImportError as e:
    sys.exit(f"{e}: this script needs numpy, h5py and matplotlib; run scripts/install-deps.sh --python, then "
             f".venv/bin/python {' '.join(sys.argv)}")


def load(path):
    with h5py.File(path, "r") as f:
        for name in ("samples/x", "samples/cond", "samples/reward", "task/modes", "task/target"):
            if name not in f:
                sys.exit(f"plot_samples: {path} has no /{name}: not a file of `dynrl sample`")
        return {
            "x": f["samples/x"][:],
            "cond": f["samples/cond"][:],
            "reward": f["samples/reward"][:],
            "modes": f["task/modes"][:],
            "target": f["task/target"][:],
            "width": float(f.attrs["reward_width"]),
            "phase": f.attrs.get("phase", b"").decode() if isinstance(f.attrs.get("phase", ""), bytes)
            else str(f.attrs.get("phase", "")),
        }


def panel(ax, d, label):
    colours = plt.cm.tab10(np.arange(d["modes"].shape[0]) % 10)
    for c in range(d["modes"].shape[0]):
        pts = d["x"][d["cond"] == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.35, color=colours[c], label=f"condition {c}")
        ax.scatter(d["modes"][c, :, 0], d["modes"][c, :, 1], marker="x", s=25, color=colours[c], linewidths=1)
        centre = d["modes"][c, d["target"][c]]
        for k, style in ((1, "-"), (2, "--")):
            ax.add_patch(plt.Circle(centre, k * d["width"], fill=False, color=colours[c], linestyle=style, lw=1.2))
    ax.set_title(f"{label}: mean reward {d['reward'].mean():.3f}")
    ax.set_aspect("equal")
    ax.set_xlim(-3.5, 3.5)
    ax.set_ylim(-3.5, 3.5)
    ax.grid(alpha=0.2)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="HDF5 files of `dynrl sample`")
    p.add_argument("-o", "--out", default="samples.png", help="PNG to write (default samples.png)")
    p.add_argument("--labels", nargs="+", help="one title per file (default: the checkpoint's phase)")
    a = p.parse_args()
    if a.labels and len(a.labels) != len(a.files):
        sys.exit("plot_samples: give one label per file")
    data = [load(f) for f in a.files]
    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 5.2), squeeze=False)
    for i, d in enumerate(data):
        panel(axes[0, i], d, a.labels[i] if a.labels else (d["phase"] or os.path.basename(a.files[i])))
    axes[0, 0].legend(loc="lower left", fontsize=7, markerscale=3)
    fig.suptitle("flow2d samples (ODE); circles: reward regions at 1 and 2 widths around each target mode")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
