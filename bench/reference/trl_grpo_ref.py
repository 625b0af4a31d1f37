"""TRL GRPOTrainer side of bench/trl_compare.sh: GRPO iterations on the CPU with the policy dynrl exported.

The policy is a Hugging Face directory written by `dynrl export CKPT -o DIR --dtype fp32` from a `sort` task
checkpoint (vocabulary "0123456789=.", '.' ends a response); the tokenizer maps each of those characters to its id,
as dynrl's task vocabulary does. Prompts are "dddddd=" (6 random digits), the reward is 1 when the completion is the
sorted digits (TRL decodes without the end token), else 0 -- the sort task's exact match. The settings follow dynrl's
default GRPO iteration: 8 prompts x num_generations 16 = 128 completions per step of up to 16 tokens, temperature 1,
top_k 0, one optimizer step per generation (steps_per_generation 1, num_iterations 1, gradient_accumulation_steps
1), beta 0, loss_type "dapo" (token mean over the batch, as dynrl's token_mean), scale_rewards "group" (group std,
as dynrl's advantages), clip 0.2 / 0.28, AdamW lr 1e-4 constant, betas 0.9 / 0.95, eps 1e-8, no weight decay, grad
norm clip 1. Times every training step (generation, reward, old-policy pass when TRL takes one, forward, backward
and optimizer step); prints the median of the steps after --warmup.

    python bench/reference/trl_grpo_ref.py --model DIR [--threads 2] [--warmup 2] [--iters 10] [--csv out.csv]
"""
import argparse
import random
import statistics
import tempfile
import time

import torch
import transformers
import trl
from datasets import Dataset
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

VOCAB = "0123456789=."


def char_tokenizer():
    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(VOCAB)}, unk_token="."))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()  # characters joined as they are, no spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=".", pad_token=".", padding_side="left")


def sort_reward(prompts, completions, **_):
    return [1.0 if c == "".join(sorted(p[:-1])) else 0.0 for p, c in zip(prompts, completions)]


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self.t0 = [], 0.0

    def on_step_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self.t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--csv")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rng = random.Random(1)
    steps = a.warmup + a.iters
    prompts = ["".join(rng.choice("0123456789") for _ in range(6)) + "=" for _ in range(8 * steps)]
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as out:
        cfg = GRPOConfig(output_dir=out, use_cpu=True, bf16=False, fp16=False, per_device_train_batch_size=128,
                         num_generations=16, steps_per_generation=1,
                         gradient_accumulation_steps=1, num_iterations=1, beta=0.0, loss_type="dapo",
                         scale_rewards="group", max_completion_length=16, temperature=1.0, top_k=0, top_p=1.0,
                         epsilon=0.2, epsilon_high=0.28, learning_rate=1e-4, lr_scheduler_type="constant",
                         warmup_steps=0, adam_beta1=0.9, adam_beta2=0.95, adam_epsilon=1e-8, weight_decay=0.0,
                         max_grad_norm=1.0, max_steps=steps, logging_steps=10 ** 6, save_strategy="no",
                         report_to=[], seed=1, disable_tqdm=True, dataloader_num_workers=0)
        timer = StepTimer()
        trainer = GRPOTrainer(model=model, reward_funcs=sort_reward, args=cfg,
                              train_dataset=Dataset.from_dict({"prompt": prompts}),
                              processing_class=char_tokenizer(), callbacks=[timer])
        trainer.train()
    timed = timer.times[a.warmup:]
    ms = 1e3 * statistics.median(timed)
    print(f"TRL GRPOTrainer: {len(timed)} timed steps, median {ms:.2f} ms/step "
          f"(trl {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__})")
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("steps,ms_per_step\n%d,%.3f\n" % (len(timed), ms))


if __name__ == "__main__":
    main()
