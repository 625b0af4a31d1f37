"""Parity fixtures for the policy losses of engine/grpo.c, computed by verl's own functions.

tests/test_grpo.cc reads tests/fixtures/policy_loss/cases.json: {"meta": provenance, "cases": [...]}, each case a
random batch (rows x T log-probs, old log-probs, a mask, one advantage per row) with verl's loss value, its gradient
with respect to the log-probs (autograd, float64) and its clip fraction:
  gspo     verl/trainer/ppo/core_algos.py compute_policy_loss_gspo (aggregates seq-mean-token-mean)
  vanilla  compute_policy_loss_vanilla with loss_agg_mode token-mean, seq-mean-token-mean, seq-mean-token-sum (each
           sequence mode twice: agg_loss counting the rows with a loss token, and verl's trainer passing the batch's
           row count), and seq-mean-token-sum-norm with loss_scale_factor 12

The functions are taken from the files by their source text (with agg_loss and verl/utils/torch_functional.py's
masked_sum and masked_mean), so only torch is needed, not verl's dependencies:

    git clone https://github.com/volcengine/verl
    .venv/bin/python bench/reference/policy_loss_fixtures.py --verl verl

The committed fixtures were made from verl b178a3cd56f58b2d502255daba591e92833930a7 with torch 2.x on the CPU.
"""
import argparse
import ast
import json
import os
import subprocess
import types

import numpy as np
import torch

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
out_path = os.path.join(root, "tests", "fixtures", "policy_loss", "cases.json")


def functions(path, names):
    """The source of the named top-level functions of path, without their decorators."""
    tree = ast.parse(open(path).read())
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            node.decorator_list = []
            out.append(ast.unparse(node))
    missing = set(names) - {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert not missing, missing
    return "\n\n".join(out)


class ActorConfig(types.SimpleNamespace):
    def get(self, key, default=None):
        return getattr(self, key, default)


def load_verl(verl):
    tf = {"torch": torch}
    exec(functions(os.path.join(verl, "verl/utils/torch_functional.py"), ["masked_sum", "masked_mean"]), tf)
    tf = types.SimpleNamespace(**tf)
    ns = {"torch": torch, "verl_F": tf, "ActorConfig": ActorConfig, "AlgoConfig": type("AlgoConfig", (), {}),
          "Optional": __import__("typing").Optional, "Any": __import__("typing").Any}
    src = functions(os.path.join(verl, "verl/trainer/ppo/core_algos.py"),
                    ["agg_loss", "compute_policy_loss_vanilla", "compute_policy_loss_gspo"])
    exec(src, ns)
    return ns


def f32(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def case(ns, rng, kind, agg, rows, T, spread, batch_info=None):
    """batch_info: verl's global_batch_info; {"global_batch_size": rows} is its trainer's convention (every row counts
    as a sequence), {} lets agg_loss count the rows with a loss token; {"loss_scale_factor": L} sets sum-norm's L."""
    batch_info = batch_info or {}
    cfg = ActorConfig(clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0,
                      global_batch_info=batch_info)
    mask = (rng.random((rows, T)) < 0.7).astype(np.float64)
    mask[0, :] = 0.0                     # a row without loss tokens
    mask[1, :] = 0.0
    mask[1, T // 2] = 1.0                # a row of one token
    lp = f32(-3.0 * rng.random((rows, T)))
    # per-row shifts move whole sequences past the clips; per-token noise spreads tokens inside a row
    shift = rng.normal(0.0, spread, (rows, 1))
    old = f32(lp - shift - rng.normal(0.0, 0.3, (rows, T)))
    adv = f32(rng.normal(0.0, 1.2, rows))
    adv[2] = 0.0                         # a zero advantage
    lp_t = torch.tensor(lp, requires_grad=True)
    fn = ns["compute_policy_loss_gspo"] if kind == "gspo" else ns["compute_policy_loss_vanilla"]
    loss, metrics = fn(torch.tensor(old), lp_t, torch.tensor(adv)[:, None].expand(rows, T), torch.tensor(mask),
                       loss_agg_mode=agg, config=cfg)
    loss.backward()
    return {"loss_kind": kind, "agg": agg, "clip_low": 0.2, "clip_high": 0.28, "clip_c": 3.0, "rows": rows, "T": T,
            "logprob": lp.ravel().tolist(), "old_logprob": old.ravel().tolist(), "adv": adv.tolist(),
            "mask": mask.astype(int).ravel().tolist(), "pg_loss": loss.item(), "grad": lp_t.grad.ravel().tolist(),
            "clip_frac": metrics["actor/pg_clipfrac"], "count_empty_rows": int("global_batch_size" in batch_info),
            "norm_len": batch_info.get("loss_scale_factor", T)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verl", required=True, help="a checkout of github.com/volcengine/verl")
    ap.add_argument("--rev", help="the verl commit, when --verl is not a git checkout")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    ns = load_verl(args.verl)
    rng = np.random.default_rng(17)
    cases = []
    for spread in (0.05, 0.3, 1.0):
        cases.append(case(ns, rng, "gspo", "seq-mean-token-mean", 7, 9, spread))
        for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"):
            cases.append(case(ns, rng, "vanilla", agg, 7, 9, spread))
        for agg in ("seq-mean-token-mean", "seq-mean-token-sum"):
            cases.append(case(ns, rng, "vanilla", agg, 7, 9, spread, {"global_batch_size": 7}))
        cases.append(case(ns, rng, "vanilla", "seq-mean-token-sum-norm", 7, 9, spread, {"loss_scale_factor": 12}))
    rev = args.rev
    if not rev:
        try:
            rev = subprocess.check_output(["git", "-C", args.verl, "rev-parse", "HEAD"], text=True).strip()
        except (OSError, subprocess.CalledProcessError):
            rev = "unknown"
    meta = {"verl": rev, "torch": torch.__version__, "script": "bench/reference/policy_loss_fixtures.py"}
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump({"meta": meta, "cases": cases}, f)
        f.write("\n")
    print("wrote %d cases to %s" % (len(cases), out_path))


if __name__ == "__main__":
    main()
