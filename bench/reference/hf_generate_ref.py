"""Hugging Face transformers' generate() side of bench/hf_generate_compare.sh.

Loads the Hugging Face directory bench_rollout --export wrote (the same weights dynrl times, EOS made unreachable)
with AutoModelForCausalLM in float32 and times generate() on 8 prompts of --prompt-len random digits with
num_return_sequences=16 (128 rows), do_sample=True, temperature 1, top_k=0, top_p=1, min_new_tokens =
max_new_tokens (every row generates the full length, as in bench_rollout), then the per-token log-probability and
full-vocabulary entropy from the returned logits (the records dynrl's rollout keeps). torch.inference_mode,
torch.set_num_threads(--threads). ms/call is the median timed call; tokens/s = rows x new tokens / that.

    python bench/reference/hf_generate_ref.py --model DIR --prompt-len 16 --lengths 16,64 [--threads 2]
        [--warmup 1] [--reps N] [--csv out.csv]
"""
import argparse
import statistics
import time

import torch
import transformers
from transformers import AutoModelForCausalLM

N_PROMPTS, GROUP = 8, 16


def default_reps(n):
    return 7 if n <= 16 else 3 if n <= 64 else 1


def call(model, ids, new_tokens, eos):
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                         top_k=0, top_p=1.0, num_return_sequences=GROUP, max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, output_logits=True, return_dict_in_generate=True,
                         pad_token_id=eos, eos_token_id=eos)
    logits = torch.stack(out.logits, dim=1).float()  # [rows, new, V]
    logp = torch.log_softmax(logits, dim=-1)
    tokens = out.sequences[:, ids.shape[1]:]
    lp = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    ent = -(logp.exp() * logp).sum(-1)
    return tokens.numel(), lp, ent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--lengths", default="16,64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=-1)
    ap.add_argument("--csv")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32).eval()
    eos = model.config.eos_token_id
    ids = torch.randint(0, 10, (N_PROMPTS, a.prompt_len))
    lengths = [int(x) for x in a.lengths.split(",")]
    rows = []
    with torch.inference_mode():
        for i, n in enumerate(lengths):
            for _ in range(a.warmup if i == 0 else 0):
                call(model, ids, n, eos)
            reps = a.reps if a.reps > 0 else default_reps(n)
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                generated, _, ent = call(model, ids, n, eos)
                times.append(time.perf_counter() - t0)
                assert generated == N_PROMPTS * GROUP * n, "every row generates the full length"
            ms = 1e3 * statistics.median(times)
            rows.append((n, N_PROMPTS * GROUP, a.prompt_len, a.warmup if i == 0 else 0, reps, ms,
                         N_PROMPTS * GROUP * n / (ms / 1e3)))
            print(f"generate(): {n} new tokens, {reps} calls: {ms:.2f} ms/call, mean entropy {ent.mean():.3f}",
                  flush=True)
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("new_tokens,rows,prompt_len,warmup,reps,ms_per_call,tokens_per_s\n")
            for r in rows:
                f.write("%d,%d,%d,%d,%d,%.4f,%.1f\n" % r)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
