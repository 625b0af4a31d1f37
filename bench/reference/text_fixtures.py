"""The end-to-end text fixture (tests/test_text_train.cc): a tiny random Qwen2 policy written by transformers whose
vocabulary (520 rows) covers the Qwen-style fixture tokenizer (514 ids, tests/fixtures/tokenizer/qwen), that
tokenizer beside it, a JSONL of short arithmetic word problems with GSM8K-style answers, and transformers' greedy
continuations of some prompts by that policy, decoded by tokenizers (greedy.json, for `dynrl generate`).

    .venv/bin/pip install torch transformers safetensors && .venv/bin/python bench/reference/text_fixtures.py
"""
import json
import os
import random
import shutil

import torch
from tokenizers import Tokenizer
from transformers import Qwen2Config, Qwen2ForCausalLM

from hf_fixtures import rerandomise  # the same re-randomisation as the parity fixtures

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
out = os.path.join(root, "tests", "fixtures", "text")


def problems(n, seed):
    rng = random.Random(seed)
    names = ["Tom", "Ana", "Li", "Sam", "Mia", "Raj"]
    things = ["apples", "pens", "cards", "coins", "books"]
    lines = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        who, what = rng.choice(names), rng.choice(things)
        if rng.random() < 0.5:
            q = "%s has %d %s and gets %d more. How many %s now?" % (who, a, what, b, what)
            ans = a + b
        else:
            a, b = max(a, b), min(a, b)
            q = "%s has %d %s and gives %d away. How many %s now?" % (who, a, what, b, what)
            ans = a - b
        lines.append({"prompt": q + " Answer after ####.", "answer": str(ans)})
    return lines


def main():
    model_dir = os.path.join(out, "qwen2")
    if os.path.isdir(model_dir):
        shutil.rmtree(model_dir)
    cfg = Qwen2Config(vocab_size=520, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=True,
                      rope_theta=1000000.0, bos_token_id=0, eos_token_id=2, attn_implementation="eager")
    model = Qwen2ForCausalLM(cfg).float()
    rerandomise(model, torch.Generator().manual_seed(99))
    model.save_pretrained(model_dir, safe_serialization=True)
    shutil.copy(os.path.join(root, "tests", "fixtures", "tokenizer", "qwen", "tokenizer.json"), model_dir)
    with open(os.path.join(out, "word_problems.jsonl"), "w") as f:
        for line in problems(48, 7):
            f.write(json.dumps(line) + "\n")
    write_greedy(model, Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json")))


def write_greedy(model, tok, new_tokens=12):
    """Greedy decoding as `dynrl generate --template raw --temperature 0` runs it: the prompt encoded without added
    tokens, generation until EOS (id 2) or new_tokens, the new ids decoded without special tokens. The smallest gap
    between the two largest logits along the way is recorded: a near tie would make the comparison fragile."""
    cases = []
    for prompt in ["Sam has 6 apples and gets 3 more.", "How many books now? Answer after ####.", "東京 café 🙂 1234"]:
        ids = tok.encode(prompt, add_special_tokens=False).ids
        out_ids = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False, eos_token_id=2,
                                 pad_token_id=2, output_logits=True, return_dict_in_generate=True)
        new = out_ids.sequences[0, len(ids):].tolist()
        gap = min(float(torch.topk(l[0], 2).values[0] - torch.topk(l[0], 2).values[1]) for l in out_ids.logits)
        cases.append({"prompt": prompt, "ids": new, "text": tok.decode(new, skip_special_tokens=True), "min_gap": gap})
    with open(os.path.join(out, "greedy.json"), "w") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
