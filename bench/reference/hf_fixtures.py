"""Parity fixtures for Hugging Face checkpoints, written by transformers itself (tests/test_hf_parity.cc reads them).

Three tiny random causal LMs, every parameter re-randomised (HF's own init leaves biases at 0 and norms at 1, which
would hide exactly the bugs parity must catch: weights and biases N(0, 0.2), norms 1 +- 0.1):
  llama  untied, GQA, llama3 RoPE scaling whose three branches all occur (head_dim 8: wavelengths 6.3, 63, 628, 6283
         against original_max_position_embeddings 64 / high 4 = 16 and / low 1 = 64)
  qwen2  tied, q/k/v biases
  qwen3  q/k norms, head_dim 16 apart from hidden / heads = 8
plus llama_sharded (the same llama in 64 KB shards with an index) and qwen2_bf16 (qwen2 saved in bfloat16).

tests/fixtures/hf/expected_<model>.h5 holds what transformers computes in fp32 (eager attention, CPU):
  prompt_i [T_i] int32          three prompts of different lengths
  logits_i [T_i, V] float32     logits of every prompt position
  greedy_i [32] int32           generate(do_sample=False, max_new_tokens=32, no EOS stop)
  seq [S] int32, resp_start     prompt_0 + its first 8 greedy tokens; the response starts at resp_start
  grad/<name> float32           d(sum of the response tokens' log-probs) / d parameter, per HF tensor
  stats/<name> [2] float64      sum and sum of squares of each parameter as transformers holds it
qwen2_bf16 holds the logits of the bf16 weights computed in fp32 (logits_i) and its top-1 agreement with qwen2's
fp32 logits (attribute top1_vs_fp32).

    scripts/install-deps.sh --torch && .venv/bin/pip install transformers safetensors && \\
        .venv/bin/python bench/reference/hf_fixtures.py

With --scale DIR it writes instead, not for committing, a random checkpoint of Qwen2.5-0.5B-Instruct's shapes
(494M parameters, tied, bf16) into DIR for bench/hf_scale.sh; --scale-1.5b DIR the same for Qwen2.5-1.5B's shapes.
"""
import argparse
import os
import shutil

import h5py
import numpy as np
import torch
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                          Qwen3ForCausalLM)

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
out_dir = os.path.join(root, "tests", "fixtures", "hf")
V = 512
N_GREEDY = 32
N_RESP = 8


def common():
    return dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, bos_token_id=1,
                eos_token_id=2, attn_implementation="eager")


def models():
    llama = LlamaConfig(**common(), tie_word_embeddings=False, rope_theta=10000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    qwen2 = Qwen2Config(**common(), tie_word_embeddings=True, rope_theta=1000000.0)
    qwen3 = Qwen3Config(**common(), tie_word_embeddings=False, head_dim=16, rope_theta=1000000.0)
    return {"llama": (LlamaForCausalLM, llama), "qwen2": (Qwen2ForCausalLM, qwen2), "qwen3": (Qwen3ForCausalLM, qwen3)}


def rerandomise(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * (2 * torch.rand(p.shape, generator=gen) - 1))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def prompts(gen):
    return [torch.randint(3, V, (n,), generator=gen) for n in (4, 7, 10)]


def greedy(model, prompt):
    out = model.generate(prompt[None], max_new_tokens=N_GREEDY, do_sample=False, eos_token_id=None, pad_token_id=0,
                         min_new_tokens=N_GREEDY)
    return out[0, len(prompt):]


def write_expected(name, model, ps, reference_logits=None):
    with h5py.File(os.path.join(out_dir, "expected_%s.h5" % name), "w") as g:
        g.attrs["transformers"] = transformers.__version__
        g.attrs["torch"] = str(torch.__version__)
        return write_outputs(g, model, ps, reference_logits)


def write_outputs(g, model, ps, reference_logits):
    model.eval()
    logits_all = []
    for i, p in enumerate(ps):
        with torch.no_grad():
            logits = model(p[None]).logits[0].float()
        logits_all.append(logits)
        g["prompt_%d" % i] = p.numpy().astype(np.int32)
        g["logits_%d" % i] = logits.numpy().astype(np.float32)
        g["greedy_%d" % i] = greedy(model, p).numpy().astype(np.int32)
    if reference_logits is not None:
        agree = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(logits_all, reference_logits))
        total = sum(a.shape[0] for a in logits_all)
        g.attrs["top1_vs_fp32"] = agree / total
        return logits_all
    seq = torch.cat([ps[0], torch.from_numpy(g["greedy_0"][:N_RESP]).long()])
    start = len(ps[0])
    model.zero_grad()
    logp = torch.log_softmax(model(seq[None]).logits[0].float(), -1)
    # position t predicts token t + 1: the response tokens are seq[start:], predicted at start - 1 ..
    total = logp[start - 1:-1].gather(1, seq[start:, None]).sum()
    total.backward()
    g["seq"] = seq.numpy().astype(np.int32)
    g.attrs["resp_start"] = start
    grads = g.create_group("grad")
    stats = g.create_group("stats")
    for pname, p in model.named_parameters():
        grads[pname] = p.grad.numpy().astype(np.float32)
        d = p.detach().double()
        stats[pname] = np.array([float(d.sum()), float((d * d).sum())])
    return logits_all


SCALE_SHAPES = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2),
}


def write_scale(size, path):
    cfg = Qwen2Config(vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                      tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645, **SCALE_SHAPES[size])
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)
    print("wrote %s: %d parameters" % (path, sum(p.numel() for p in model.parameters())))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", metavar="DIR")
    ap.add_argument("--scale-1.5b", dest="scale15", metavar="DIR")
    args = ap.parse_args()
    if args.scale or args.scale15:
        if args.scale:
            write_scale("0.5b", args.scale)
        if args.scale15:
            write_scale("1.5b", args.scale15)
        return
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    ps = prompts(gen)
    fp32_logits = {}
    for name, (cls, cfg) in models().items():
        model = cls(cfg).float()
        rerandomise(model, gen)
        model.save_pretrained(os.path.join(out_dir, name), safe_serialization=True)
        fp32_logits[name] = write_expected(name, model, ps)
        if name == "llama":
            model.save_pretrained(os.path.join(out_dir, "llama_sharded"), safe_serialization=True,
                                  max_shard_size="64KB")
        if name == "qwen2":
            bf16_dir = os.path.join(out_dir, "qwen2_bf16")
            model.to(torch.bfloat16).save_pretrained(bf16_dir, safe_serialization=True)
            # Loaded back in fp32 as a user would: the weights rounded, the RoPE buffers computed afresh in fp32
            # (converting the model in place would have rounded those too).
            rounded = cls.from_pretrained(bf16_dir, dtype=torch.float32, attn_implementation="eager")
            write_expected("qwen2_bf16", rounded, ps, reference_logits=fp32_logits["qwen2"])
    for dirpath, _, files in os.walk(out_dir):
        for f in files:
            size = os.path.getsize(os.path.join(dirpath, f))
            print("%-60s %7.1f KB" % (os.path.relpath(os.path.join(dirpath, f), root), size / 1024))


if __name__ == "__main__":
    main()
