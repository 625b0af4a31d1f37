"""PyTorch side of the rollout-throughput comparison with bench/bench_rollout.c.

The same policy (transformer_ref.py's architecture at the default size: d_model 128, 4 layers, 4 heads, d_ff 512,
vocabulary 13, tied LM head), the same shapes (8 prompts of 8 tokens x 16 rollouts = 128 rows; 16 and 64 new
tokens) and the same work per token as drl_rollout_generate: prefill once per prompt, copy its KV cache to its G rows,
then decode one token per step for every row with a preallocated KV cache, sampling at temperature 1 from the full
softmax and recording the sampled token's log-probability and the full-vocabulary entropy. float32 on the CPU,
torch.inference_mode, F.scaled_dot_product_attention, torch.set_num_threads as given (2 by default). No row stops
early (bench_rollout makes EOS unreachable for the same reason), so both sides generate rows x new tokens.
ms/call is the median timed call; tokens/s comes from it, as in bench_rollout.

    .venv/bin/python bench/reference/generate_ref.py [--warmup 1] [--reps N] [--threads 2] [--csv out.csv]

bench/side_by_side.sh runs this and bench_rollout and prints the ratio.
"""
import argparse
import time

import torch
import torch.nn.functional as F

from transformer_ref import Config, Transformer, apply_rope, rms_norm

N_PROMPTS, GROUP, PROMPT_LEN = 8, 16, 8
LENGTHS = [(16, 7), (64, 3)]  # new tokens, default timed calls (as in bench_rollout.c)


def block_step(block, cfg, x, cos, sin, k_cache, v_cache, t0):
    """One block over x [B, S, C] at positions t0 .. t0+S-1, appending k/v to the caches [B, KV, T_max, D]."""
    B, S, _ = x.shape
    D = cfg.head_dim
    h = rms_norm(x, block.attn_norm, cfg.norm_eps)
    q = apply_rope(F.linear(h, block.wq).view(B, S, cfg.n_heads, D), cos, sin).transpose(1, 2)
    k = apply_rope(F.linear(h, block.wk).view(B, S, cfg.n_kv_heads, D), cos, sin).transpose(1, 2)
    v = F.linear(h, block.wv).view(B, S, cfg.n_kv_heads, D).transpose(1, 2)
    k_cache[:, :, t0:t0 + S] = k
    v_cache[:, :, t0:t0 + S] = v
    keys, values = k_cache[:, :, :t0 + S], v_cache[:, :, :t0 + S]
    rep = cfg.n_heads // cfg.n_kv_heads
    if rep > 1:
        keys, values = keys.repeat_interleave(rep, dim=1), values.repeat_interleave(rep, dim=1)
    # prefill (S > 1, t0 = 0): causal; decode (S = 1): the new query sees every cached position
    att = F.scaled_dot_product_attention(q, keys, values, is_causal=S > 1)
    x = x + F.linear(att.transpose(1, 2).reshape(B, S, cfg.n_heads * D), block.wo)
    h = rms_norm(x, block.ffn_norm, cfg.norm_eps)
    return x + F.linear(F.silu(F.linear(h, block.w_gate)) * F.linear(h, block.w_up), block.w_down)


def forward(model, tokens, caches, t0):
    cfg = model.cfg
    S = tokens.shape[1]
    x = model.tok_emb[tokens]
    cos, sin = model.cos[t0:t0 + S], model.sin[t0:t0 + S]
    for block, (kc, vc) in zip(model.layers, caches):
        x = block_step(block, cfg, x, cos, sin, kc, vc, t0)
    x = rms_norm(x[:, -1], model.final_norm, cfg.norm_eps)  # only the last position's logits are needed
    return F.linear(x, model.tok_emb)


def sample(logits, temperature, generator):
    z = logits / temperature
    logp = torch.log_softmax(z, dim=-1)
    p = logp.exp()
    tok = torch.multinomial(p, 1, generator=generator).squeeze(1)
    return tok, logp.gather(1, tok[:, None]).squeeze(1), -(p * logp).sum(-1)


def generate(model, prompts, new_tokens, generator):
    cfg = model.cfg
    rows, T = N_PROMPTS * GROUP, PROMPT_LEN + new_tokens
    D = cfg.head_dim
    caches = [(torch.empty(N_PROMPTS, cfg.n_kv_heads, T, D), torch.empty(N_PROMPTS, cfg.n_kv_heads, T, D))
              for _ in range(cfg.n_layers)]
    logits = forward(model, prompts, caches, 0)  # prefill once per prompt
    # each prompt's cache and last logits to its G rows
    caches = [(kc.repeat_interleave(GROUP, 0), vc.repeat_interleave(GROUP, 0)) for kc, vc in caches]
    logits = logits.repeat_interleave(GROUP, 0)
    out = torch.empty(rows, new_tokens, dtype=torch.long)
    logprob, entropy = torch.empty(rows, new_tokens), torch.empty(rows, new_tokens)
    for s in range(new_tokens):
        tok, lp, ent = sample(logits, 1.0, generator)
        out[:, s], logprob[:, s], entropy[:, s] = tok, lp, ent
        if s + 1 < new_tokens:
            logits = forward(model, tok[:, None], caches, PROMPT_LEN + s)
    return out, logprob, entropy


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=0, help="timed calls per length (0: the per-length defaults)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--csv", help="write one line per length here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = Config(vocab=13, d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, d_ff=512, max_seq=128)
    model = Transformer(cfg, torch.float32, sdpa=True)
    model.init_normal()
    model.eval()
    # prompts shaped like the add task's "ddd+ddd=": digits, '+' (10), '=' (11)
    prompts = torch.randint(0, 10, (N_PROMPTS, PROMPT_LEN))
    prompts[:, 3], prompts[:, 7] = 10, 11
    gen = torch.Generator().manual_seed(1234)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"PyTorch {torch.__version__}, float32 CPU, {torch.get_num_threads()} threads, {n_params / 1e6:.2f}M parameters")
    print("| new tokens | rows | calls (warm-up) | median ms/call | ms per decode step | generated tokens/s | mean entropy |")
    print("|---|---|---|---|---|---|---|")
    rows_out = []
    with torch.inference_mode():
        for new_tokens, default_reps in LENGTHS:
            reps = args.reps or default_reps
            times = []
            for i in range(args.warmup + reps):
                t0 = time.perf_counter()
                toks, lp, ent = generate(model, prompts, new_tokens, gen)
                t = time.perf_counter() - t0
                if i >= args.warmup:
                    times.append(t)
            med = sorted(times)[(reps - 1) // 2]
            rows = N_PROMPTS * GROUP
            tps = rows * new_tokens / med
            print(f"| {new_tokens} | {rows} | {reps} ({args.warmup}) | {1e3 * med:.2f} | {1e3 * med / new_tokens:.3f} "
                  f"| {tps:.0f} | {float(ent.mean()):.3f} |", flush=True)
            rows_out.append((new_tokens, rows, reps, 1e3 * med, tps))
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("new_tokens,rows,prompt_len,warmup,reps,ms_per_call,tokens_per_s\n")
            for new_tokens, rows, reps, ms, tps in rows_out:
                f.write(f"{new_tokens},{rows},{PROMPT_LEN},{args.warmup},{reps},{ms:.4f},{tps:.1f}\n")


if __name__ == "__main__":
    main()
