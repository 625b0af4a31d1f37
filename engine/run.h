/* A training run's resources: configuration, device, the policy (a token transformer with its data, or a flow
 * network with its task) and its parameter set, data parallelism, the checkpoint path and the run's counters. The
 * trainer and the public API both build on it; saving, resuming and evaluating work alike for either policy. */
#ifndef DRL_RUN_H
#define DRL_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "data/text_reward.h"
#include "data/tokenizer.h"
#include "data/flow2d.h"
#include "distributed/dp.h"
#include "engine/config.h"
#include "engine/hf_model.h"
#include "engine/moe_balance.h"
#include "models/flow.h"
#include "models/transformer.h"
#include "samplers/rollout.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Steps skipped because a loss or gradient was not finite: in all and in a row up to now (both checkpointed), and
 * what the current streak's first step found ("loss" or a tensor's name). */
typedef struct drl_bad_steps {
  int64_t total, streak;
  char first[DRL_TENSOR_NAME_CAP];
} drl_bad_steps;

typedef struct drl_run {
  const drl_config *cfg;
  drl_device dev;
  drl_comm *comm;         /* the job; NULL: this process alone */
  char ckpt_path[4096];   /* run.out_dir/ckpt.h5 */
  char *config_yaml;      /* the effective configuration, stored in checkpoints */
  int flow_policy;        /* the phases are flow phases: the policy is `flow`, else `model` */
  drl_params *ps;         /* the policy's parameter set (model.ps or flow.ps) */
  int64_t optim_step;     /* AdamW steps so far, across phases (bias correction) */
  drl_bad_steps bad;      /* skipped steps (drl_run_count_step) */
  drl_dp dp;              /* data parallelism over the job's ranks and the shards of every batch */
  /* the token policy */
  drl_dataset data;       /* examples [0, n_train) train; the next n_eval are held out */
  int64_t n_train, n_eval;
  int max_answer;         /* longest reference answer: the greedy evaluation's length cap */
  int max_prompt;         /* longest training prompt: the rollout's prompt block */
  drl_transformer model;
  drl_moe_balance balance; /* the MoE blocks' load balancing (inactive for a dense policy) */
  drl_hf_source hf;        /* where trainer.init_from's pretrained policy came from, when it did (has_hf) */
  int has_hf;
  /* how responses end and are scored: the task's vocabulary and verifier, or for a text prompt set the policy's
   * tokenizer, its EOS ids and grpo.text_reward on the decoded text */
  int eos;
  int32_t stop_ids[DRL_HF_MAX_EOS]; /* the policy's other EOS ids */
  int n_stop;
  drl_tokenizer tok;                /* a text set's BPE tokenizer, or the task's character vocabulary */
  drl_text_reward_spec text_reward; /* text sets only */
  /* the flow policy */
  drl_flow2d task;
  drl_flow flow;
} drl_run;

/* Validates cfg, pins the thread count (with several ranks on a node, 0 threads means the node's cores divided among
 * them), opens the device (a rank of a multi-rank job takes the GPU of its local rank), renders the effective
 * configuration, and creates the policy with activations for B_max rows: for flow phases the
 * flow network of cfg's flow2d task; otherwise loads or generates the data (and checks every example fits
 * model.max_seq) and creates the transformer. Sets up data parallelism over comm (NULL: one process; dist.shards
 * still applies). On failure nothing stays open. */
drl_status drl_run_open(drl_run *r, const drl_config *cfg, drl_comm *comm, int B_max);

/* Frees everything; safe on a zeroed run. */
void drl_run_close(drl_run *r);

/* Creates run.out_dir (and the directories above it) for the trainer's files. */
drl_status drl_run_make_out_dir(const drl_run *r);

/* Writes the policy, the optimizer state (gathered from the ranks under ZeRO) and the position (phase, step within
 * it) to a checkpoint at path; rank 0 writes, and every rank returns its status. Collective. */
drl_status drl_run_save(drl_run *r, const char *path, const char *phase, int step);

/* Loads the weights of path (a checkpoint, a policy file from `dynrl import`, or a Hugging Face directory) into the
 * policy, leaving the optimizer alone. */
drl_status drl_run_load_weights(drl_run *r, const char *path);

/* Loads the checkpoint at path into the policy and the optimizer (each rank its part under ZeRO: a checkpoint holds
 * the whole state, so it resumes on any number of ranks); *phase and *step say where it was written. */
drl_status drl_run_resume(drl_run *r, const char *path, char *phase, size_t phase_cap, int *step);

/* Draws prompts [first, first + n) of RL iteration `step` (the Philox data stream: the same step, the same prompts)
 * into tokens (room for n x the longest prompt) and offsets (n + 1), and their examples' indices into examples (n;
 * may be NULL). */
void drl_run_draw_prompts(const drl_run *r, uint32_t step, int64_t first, int n, int32_t *tokens, int64_t *offsets,
                          int64_t *examples);

/* The reward of one response (ids, response_len of them) to example e's prompt: the task's verifier (grpo.reward:
 * exact or partial), or for a text set grpo.text_reward on the decoded response (special tokens skipped, as verl
 * decodes) against e's answer text. */
drl_status drl_run_score_one(const drl_run *r, int64_t e, const int32_t *prompt, int64_t prompt_len,
                             const int32_t *response, int64_t response_len, float *reward);

/* The reference answer of example e as text into out (emptied first): a text set's answer string, or a task's answer
 * tokens decoded; "" for e outside the set or a set without answers. */
drl_status drl_run_answer_text(const drl_run *r, int64_t e, drl_text *out);

/* drl_run_score_one of every rollout of b; prompts/offsets are the ones generated, examples their indices (NULL
 * for prompts that are not the training set's: then only a built-in task can score them). */
drl_status drl_run_score(drl_run *r, const drl_rollout_batch *b, const int32_t *prompts, const int64_t *offsets,
                         const int64_t *examples, float *rewards);

/* On the held-out examples (prompt + answer, teacher-forced): the mean cross-entropy of the answer tokens into *loss,
 * and (counts not NULL, an MoE policy) the routes of their tokens per block and expert into counts [L E], summed over
 * the ranks, which split the examples. Collective. */
drl_status drl_run_heldout(drl_run *r, double *loss, double *counts);

/* The policy's evaluation: held-out exact-match accuracy by greedy decoding (the ranks split the held-out set; -1
 * when data.n_eval is 0), or for a flow policy the mean reward of tree.eval_samples deterministic ODE samples per
 * condition (the same noises every time). */
drl_status drl_run_evaluate(drl_run *r, double *accuracy);

/* What the token policy's evaluation measures, for messages: "exact match" on a task, "mean reward" on a text set. */
const char *drl_run_eval_name(const drl_run *r);

/* Counts step `step` of phase: bad (what: "loss" or a tensor's name) or good (what NULL or ""; the streak ends). A bad
 * step is logged as skipped; the max-th in a row (max 0: never) is DRL_ERR_NUMERIC, whose message names the step, the
 * streak's first culprit and last_ckpt ("path (phase step N)"; NULL or "": none written). */
drl_status drl_run_count_step(drl_bad_steps *b, const char *phase, int64_t step, const char *what, int max,
                              const char *last_ckpt);

#ifdef __cplusplus
}
#endif
#endif /* DRL_RUN_H */
