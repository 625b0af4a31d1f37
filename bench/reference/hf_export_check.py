"""Loads directories written by `dynrl export` with transformers' AutoModelForCausalLM and compares their logits on
the fixture prompts with what transformers computed on the original checkpoints (tests/fixtures/hf/expected_*.h5).

    for m in llama qwen2 qwen3; do dynrl import tests/fixtures/hf/$m -o /tmp/$m.h5 && \\
        dynrl export /tmp/$m.h5 -o /tmp/export_$m --dtype fp32; done
    python bench/reference/hf_export_check.py /tmp/export_llama:llama /tmp/export_qwen2:qwen2 /tmp/export_qwen3:qwen3
"""
import os
import sys

import h5py
import numpy as np
import torch
import transformers

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def main():
    worst_all = 0.0
    for arg in sys.argv[1:]:
        path, name = arg.rsplit(":", 1)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager",
                                                                  dtype=torch.float32)
        with h5py.File(os.path.join(root, "tests", "fixtures", "hf", "expected_%s.h5" % name)) as f:
            worst = 0.0
            for i in range(3):
                prompt = torch.from_numpy(f["prompt_%d" % i][:]).long()
                with torch.no_grad():
                    got = model(prompt[None]).logits[0].numpy()
                want = f["logits_%d" % i][:]
                worst = max(worst, float(np.abs(got - want).max() / np.abs(want).max()))
        print("%s (%s): loaded as %s, logits max relative difference %.3g" % (path, name, type(model).__name__, worst))
        worst_all = max(worst_all, worst)
    sys.exit(0 if worst_all < 1e-6 else 1)


if __name__ == "__main__":
    main()
