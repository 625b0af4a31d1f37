"""PyTorch reference of the dynrl transformer policy and its SFT/AdamW step; writes the parity fixture.

The role of llm.c's train_gpt2.py: an independent implementation of the same model, written from the formulas
(DESIGN.md section 5 and the header comments of models/transformer.h and kernels/*.h), whose outputs the C test
(tests/test_parity.cc) must reproduce. It reads the initial weights and the batch that tests/parity_init.c wrote
(so the comparison does not depend on reimplementing our Philox initialisation), then computes in float32 on the
CPU: the per-position log-probabilities of the targets, the SFT loss (mean of -logprob over the scored positions),
every parameter gradient, and 5 AdamW steps with global-norm clipping on the same batch.

Regenerate tests/fixtures/transformer_parity.h5 (from the repository root):

    cmake --preset default && cmake --build --preset default --target parity_init
    ./build/default/tests/parity_init /tmp/parity_init.h5
    .venv/bin/python bench/reference/transformer_ref.py /tmp/parity_init.h5 tests/fixtures/transformer_parity.h5

The model: token embedding; L blocks of [RMSNorm -> causal GQA attention with rotate-half RoPE -> residual ->
RMSNorm -> SwiGLU FFN -> residual]; final RMSNorm; LM head tied to the embedding. Weights are [out, in] as in
nn.Linear, so y = x W^T.

Clipping: this script replicates dynrl's rule exactly, scale = min(1, clip / ||g||) with ||g|| the float32 value of
the square root of the float64 sum of squares, rather than torch.nn.utils.clip_grad_norm_ (which scales by
clip / (||g|| + 1e-6)). The clip is active in the fixture's steps, so the rule matters.
The AdamW update is written out by hand from Loshchilov & Hutter; the script checks it against torch.optim.AdamW on
the same (already clipped) gradients before writing anything.
"""
import argparse
import math

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LAYER_TENSORS = ["attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w_gate", "w_up", "w_down"]


class Config:
    def __init__(self, vocab, d_model, n_layers, n_heads, n_kv_heads, d_ff, max_seq, tied_embeddings=1,
                 rope_theta=10000.0, init_std=0.02, norm_eps=1e-5):
        self.vocab, self.d_model, self.n_layers = vocab, d_model, n_layers
        self.n_heads, self.n_kv_heads, self.d_ff, self.max_seq = n_heads, n_kv_heads, d_ff, max_seq
        self.tied_embeddings = tied_embeddings
        self.rope_theta, self.init_std, self.norm_eps = rope_theta, init_std, norm_eps
        self.head_dim = d_model // n_heads


def rms_norm(x, weight, eps):
    # x / sqrt(mean(x^2) + eps) * weight, over the last dimension
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def rope_tables(max_seq, head_dim, theta):
    # angle(p, i) = p * theta^(-2i/D), i < D/2; computed in float64, rounded to float32 once
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    inv_freq = theta ** (-2.0 * i / head_dim)
    angle = torch.arange(max_seq, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return torch.cos(angle).float(), torch.sin(angle).float()


def apply_rope(x, cos, sin):
    # x [B, T, heads, D]; rotate-half pairing: dimension i with i + D/2
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def causal_attention(q, k, v, sdpa=False):
    # q [B, T, H, D], k and v [B, T, KV, D]; query head h reads kv head h // (H / KV)
    B, T, H, D = q.shape
    rep = H // k.shape[2]
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    if sdpa:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        scale = float(np.float32(1.0 / math.sqrt(D)))
        scores = (q @ k.transpose(-1, -2)) * scale
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v
    return out.transpose(1, 2).reshape(B, T, H * D)


class Block(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        C, F_, D = cfg.d_model, cfg.d_ff, cfg.head_dim
        HD, KVD = cfg.n_heads * D, cfg.n_kv_heads * D

        def p(*shape):
            return nn.Parameter(torch.zeros(*shape, dtype=dtype))

        # registered in dynrl's layout order
        self.attn_norm = p(C)
        self.wq, self.wk, self.wv, self.wo = p(HD, C), p(KVD, C), p(KVD, C), p(C, HD)
        self.ffn_norm = p(C)
        self.w_gate, self.w_up, self.w_down = p(F_, C), p(F_, C), p(C, F_)

    def forward(self, x, cfg, cos, sin, sdpa):
        B, T, _ = x.shape
        D = cfg.head_dim
        h = rms_norm(x, self.attn_norm, cfg.norm_eps)
        q = apply_rope(F.linear(h, self.wq).view(B, T, cfg.n_heads, D), cos, sin)
        k = apply_rope(F.linear(h, self.wk).view(B, T, cfg.n_kv_heads, D), cos, sin)
        v = F.linear(h, self.wv).view(B, T, cfg.n_kv_heads, D)
        x = x + F.linear(causal_attention(q, k, v, sdpa), self.wo)
        h = rms_norm(x, self.ffn_norm, cfg.norm_eps)
        return x + F.linear(F.silu(F.linear(h, self.w_gate)) * F.linear(h, self.w_up), self.w_down)


class Transformer(nn.Module):
    """Parameter names match dynrl's layout names (tok_emb, layers.N.wq, ..., final_norm, lm_head when untied)."""

    def __init__(self, cfg, dtype=torch.float32, sdpa=False):
        super().__init__()
        self.cfg, self.sdpa = cfg, sdpa
        self.tok_emb = nn.Parameter(torch.zeros(cfg.vocab, cfg.d_model, dtype=dtype))
        self.layers = nn.ModuleList([Block(cfg, dtype) for _ in range(cfg.n_layers)])
        self.final_norm = nn.Parameter(torch.zeros(cfg.d_model, dtype=dtype))
        if not cfg.tied_embeddings:
            self.lm_head = nn.Parameter(torch.zeros(cfg.vocab, cfg.d_model, dtype=dtype))
        cos, sin = rope_tables(cfg.max_seq, cfg.head_dim, cfg.rope_theta)
        self.register_buffer("cos", cos.to(dtype), persistent=False)
        self.register_buffer("sin", sin.to(dtype), persistent=False)

    def layout_names(self):
        names = ["tok_emb"]
        for l in range(self.cfg.n_layers):
            names += [f"layers.{l}.{t}" for t in LAYER_TENSORS]
        names.append("final_norm")
        if not self.cfg.tied_embeddings:
            names.append("lm_head")
        return names

    def ordered_params(self):
        named = dict(self.named_parameters())
        return [named[n] for n in self.layout_names()]

    def init_normal(self, generator=None):
        # The usual scheme (what dynrl does with its own Philox streams): N(0, std) matrices, residual output
        # projections N(0, std / sqrt(2L)), norm gains 1. Used by the benchmark; the fixture loads dynrl's weights.
        resid = self.cfg.init_std / math.sqrt(2 * self.cfg.n_layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 1:
                    p.fill_(1.0)
                else:
                    std = resid if name.endswith((".wo", ".w_down")) else self.cfg.init_std
                    p.normal_(0.0, std, generator=generator)

    def logits(self, tokens):
        T = tokens.shape[1]
        x = self.tok_emb[tokens]
        for block in self.layers:
            x = block(x, self.cfg, self.cos[:T], self.sin[:T], self.sdpa)
        x = rms_norm(x, self.final_norm, self.cfg.norm_eps)
        head = self.tok_emb if self.cfg.tied_embeddings else self.lm_head
        return F.linear(x, head)

    def target_logprob(self, tokens, targets):
        # log softmax(logits)[target] per position; 0 where the target is -1 (not scored)
        logp = torch.log_softmax(self.logits(tokens), dim=-1)
        scored = targets >= 0
        picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return torch.where(scored, picked, torch.zeros_like(picked))


def sft_loss(logprob, targets):
    scored = targets >= 0
    return -(logprob * scored).sum() / scored.sum()


def clip_scale(grads, clip):
    """dynrl's rule: the norm is the float32 of sqrt(float64 sum of squares); scale = min(1, clip / norm)."""
    sumsq = sum(float((g.double() ** 2).sum()) for g in grads)
    norm = np.float32(math.sqrt(sumsq))
    scale = np.float32(clip) / norm if clip > 0 and norm > np.float32(clip) else np.float32(1.0)
    return float(norm), float(scale)


def adamw_update(p, g, m, v, step, lr, b1, b2, eps, wd):
    """One decoupled-weight-decay Adam step, in place: m, v moments; bias-corrected; decay on the old p."""
    m.mul_(b1).add_((1 - b1) * g)
    v.mul_(b2).add_((1 - b2) * g * g)
    m_hat = m / (1 - b1 ** step)
    v_hat = v / (1 - b2 ** step)
    p.sub_(lr * (m_hat / (v_hat.sqrt() + eps) + wd * p))


def train(model, tokens, targets, steps, hp):
    """steps of (forward, SFT loss, backward, clip, AdamW) on one batch. Returns the losses, the norms before
    clipping, the clip scales, the logprob and gradients of the first step, and the clipped gradients of every step
    (for the check against torch.optim.AdamW)."""
    params = model.ordered_params()
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    decay = [p.dim() > 1 for p in params]  # matrices only, as dynrl's layout marks them
    losses, norms, scales, clipped = [], [], [], []
    first_logprob = first_grads = None
    for step in range(1, steps + 1):
        model.zero_grad(set_to_none=True)
        logprob = model.target_logprob(tokens, targets)
        loss = sft_loss(logprob, targets)
        loss.backward()
        grads = [p.grad.detach().clone() for p in params]
        if step == 1:
            first_logprob, first_grads = logprob.detach().clone(), grads
        norm, scale = clip_scale(grads, hp["grad_clip"])
        losses.append(float(loss.detach()))
        norms.append(norm)
        scales.append(scale)
        with torch.no_grad():
            g_clipped = [g * scale for g in grads]
            clipped.append(g_clipped)
            for p, g, (m, v), d in zip(params, g_clipped, moments, decay):
                adamw_update(p, g, m, v, step, hp["lr"], hp["beta1"], hp["beta2"], hp["eps"],
                             hp["weight_decay"] if d else 0.0)
    return dict(losses=losses, norms=norms, scales=scales, logprob=first_logprob, grads=first_grads,
                clipped=clipped)


def check_against_torch_adamw(init_model, clipped, hp, ours):
    """Replays the clipped gradients through torch.optim.AdamW: the hand-written update must agree."""
    params = [p.detach().clone().requires_grad_(True) for p in init_model.ordered_params()]
    groups = [{"params": [p for p in params if p.dim() > 1], "weight_decay": hp["weight_decay"]},
              {"params": [p for p in params if p.dim() == 1], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], foreach=False)
    for step_grads in clipped:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
    with torch.no_grad():
        worst = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(params, ours))
    if worst > 1e-5:
        raise SystemExit(f"hand-written AdamW disagrees with torch.optim.AdamW (max relative {worst:.2e})")
    return worst


def flat(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def rel_l2(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp(min=1e-300))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("init", help="HDF5 file written by tests/parity_init")
    ap.add_argument("out", help="fixture to write, e.g. tests/fixtures/transformer_parity.h5")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    hp = dict(lr=args.lr, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=1.0)

    with h5py.File(args.init, "r") as f:
        a = f["/parity/config"].attrs
        cfg = Config(int(a["vocab"]), int(a["d_model"]), int(a["n_layers"]), int(a["n_heads"]),
                     int(a["n_kv_heads"]), int(a["d_ff"]), int(a["max_seq"]), int(a["tied_embeddings"]),
                     float(a["rope_theta"]), float(a["init_std"]), float(np.float32(a["norm_eps"])))
        names = bytes(f["/model/layout/names"][()]).decode().rstrip("\n").split("\n")
        offsets = f["/model/layout/offsets"][()]
        shapes = f["/model/layout/shapes"][()]
        init_flat = torch.from_numpy(f["/model/params"][()].astype(np.float32))
        tokens = torch.from_numpy(f["/parity/batch/tokens"][()].astype(np.int64))
        targets = torch.from_numpy(f["/parity/batch/targets"][()].astype(np.int64))

    def build(dtype):
        model = Transformer(cfg, dtype)
        if model.layout_names() != names:
            raise SystemExit(f"layout mismatch:\n ours {model.layout_names()}\n file {names}")
        with torch.no_grad():
            named = dict(model.named_parameters())
            for name, off, shape in zip(names, offsets, shapes):
                p = named[name]
                n = int(shape[0] * shape[1])
                p.copy_(init_flat[off:off + n].view(p.shape).to(dtype))
        return model

    # float32 is the reference; float64 measures the float32 rounding noise the tolerances must sit above.
    model = build(torch.float32)
    init_model = build(torch.float32)
    res = train(model, tokens, targets, args.steps, hp)
    adamw_gap = check_against_torch_adamw(init_model, res["clipped"], hp, model.ordered_params())
    model64 = build(torch.float64)
    res64 = train(model64, tokens, targets, args.steps, hp)

    final = flat(model.ordered_params())
    init32 = flat(init_model.ordered_params())
    grad_rel = [rel_l2(g, g64) for g, g64 in zip(res["grads"], res64["grads"])]
    upd_rel = [rel_l2(p - p0, p64.float() - p0)
               for p, p0, p64 in zip(model.ordered_params(), init_model.ordered_params(), model64.ordered_params())]
    lp_gap = float((res["logprob"].double() - res64["logprob"]).abs().max())

    print(f"config: vocab {cfg.vocab} d_model {cfg.d_model} layers {cfg.n_layers} heads {cfg.n_heads}/"
          f"{cfg.n_kv_heads} d_ff {cfg.d_ff}; batch {tuple(tokens.shape)}, {int((targets >= 0).sum())} scored")
    print(f"hand AdamW vs torch.optim.AdamW: max relative difference {adamw_gap:.2e}")
    for s in range(args.steps):
        print(f"step {s + 1}: loss {res['losses'][s]:.7f}  grad norm {res['norms'][s]:.5f}  "
              f"clip scale {res['scales'][s]:.5f}")
    print(f"float32 vs float64: logprob max abs {lp_gap:.2e}, loss {abs(res['losses'][0] - res64['losses'][0]):.2e}")
    print(f"{'tensor':22s} {'grad rel L2':>12s} {'update rel L2':>14s}   (float32 vs float64)")
    for name, g, u in zip(names, grad_rel, upd_rel):
        print(f"{name:22s} {g:12.2e} {u:14.2e}")

    with h5py.File(args.init, "r") as src, h5py.File(args.out, "w") as dst:
        for key in src:  # the checkpoint part and /parity/config, /parity/batch, as parity_init wrote them
            src.copy(src[key], dst, name=key)
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        par = dst["/parity"]
        par.attrs["generator"] = "bench/reference/transformer_ref.py"
        par.attrs["torch_version"] = str(torch.__version__)
        o = par.create_group("optim")
        for k, v in hp.items():
            o.attrs[k] = float(v)
        o.attrs["steps"] = np.int64(args.steps)
        fw = par.create_group("forward")
        fw.create_dataset("logprob", data=res["logprob"].numpy().astype(np.float32))
        fw.attrs["loss"] = res["losses"][0]
        par.create_dataset("grads", data=flat(res["grads"]).numpy().astype(np.float32))
        tr = par.create_group("train")
        tr.create_dataset("losses", data=np.array(res["losses"], dtype=np.float64))
        tr.create_dataset("grad_norms", data=np.array(res["norms"], dtype=np.float64))
        tr.create_dataset("params", data=final.numpy().astype(np.float32))
        noise = par.create_group("fp32_vs_fp64")  # the reference's own rounding noise, per tensor
        noise.create_dataset("grad_rel_l2", data=np.array(grad_rel, dtype=np.float64))
        noise.create_dataset("update_rel_l2", data=np.array(upd_rel, dtype=np.float64))
        noise.attrs["logprob_max_abs"] = lp_gap
    assert torch.equal(init32, init_flat)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
