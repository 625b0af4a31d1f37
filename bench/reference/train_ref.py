"""PyTorch side of the training-throughput comparison with bench/bench_train.c.

The same two models (the architecture of transformer_ref.py: Llama-style decoder, RMSNorm, rotate-half RoPE, SwiGLU,
tied LM head), the same batch shapes and the same step: forward, SFT cross-entropy over the scored positions
(next token; the last position unscored), backward, global-norm clipping to 1.0, AdamW (weight decay on matrices
only). Plain eager PyTorch, float32 on the CPU, F.scaled_dot_product_attention for attention, torch.set_num_threads
as given (2 by default, the CI machine's cores). Warm-up steps first, then a fixed number of timed steps; ms/step is
the median timed step and tokens/s comes from it, as in bench_train.

    .venv/bin/python bench/reference/train_ref.py [--warmup 3] [--steps N] [--threads 2] [--csv out.csv]

bench/side_by_side.sh runs this and bench_train with the same steps and prints the ratio.
"""
import argparse
import time

import torch
import torch.nn.functional as F

from transformer_ref import Config, Transformer

SIZES = [
    # name, config, B, T, default timed steps (as in bench_train.c)
    ("small", Config(vocab=13, d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, d_ff=512, max_seq=16), 32, 16, 20),
    ("medium", Config(vocab=13, d_model=256, n_layers=6, n_heads=8, n_kv_heads=8, d_ff=1024, max_seq=64), 16, 64, 8),
]


def run(cfg, B, T, warmup, steps):
    torch.manual_seed(0)
    model = Transformer(cfg, torch.float32, sdpa=True)
    model.init_normal()
    tokens = torch.randint(0, cfg.vocab, (B, T))
    targets = torch.cat([tokens[:, 1:], torch.full((B, 1), -1)], dim=1)  # next token; last position unscored
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() > 1], "weight_decay": 0.1},
                             {"params": [p for p in params if p.dim() == 1], "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    losses, times = [], []
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        logits = model.logits(tokens)
        loss = F.cross_entropy(logits.view(-1, cfg.vocab), targets.view(-1), ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        times.append(time.perf_counter() - t0)
    # the median timed step, as bench_train reports it (robust to a neighbour taking the cores for a moment)
    median = sorted(times[warmup:])[(steps - 1) // 2]
    n_params = sum(p.numel() for p in params)
    return dict(params=n_params, ms=1e3 * median, tokens_per_s=B * T / median,
                first_loss=losses[warmup], last_loss=losses[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=0, help="timed steps per size (0: the per-size defaults)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--csv", help="write one line per size here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    print(f"PyTorch {torch.__version__}, float32 CPU, {torch.get_num_threads()} threads")
    print("| model | params | B x T | steps (warm-up) | median ms/step | tokens/s | loss first -> last |")
    print("|---|---|---|---|---|---|---|")
    for name, cfg, B, T, default_steps in SIZES:
        steps = args.steps or default_steps
        r = run(cfg, B, T, args.warmup, steps)
        rows.append((name, r, B, T, steps))
        print(f"| {name} | {r['params'] / 1e6:.2f}M | {B} x {T} | {steps} ({args.warmup}) | {r['ms']:.2f} | "
              f"{r['tokens_per_s']:.0f} | {r['first_loss']:.3f} -> {r['last_loss']:.3f} |", flush=True)
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("model,params,B,T,warmup,steps,ms_per_step,tokens_per_s\n")
            for name, r, B, T, steps in rows:
                f.write(f"{name},{r['params']},{B},{T},{args.warmup},{steps},{r['ms']:.4f},{r['tokens_per_s']:.1f}\n")


if __name__ == "__main__":
    main()
