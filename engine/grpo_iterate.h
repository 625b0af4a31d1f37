/* One GRPO iteration (DESIGN §7), as named stages: draw prompts, roll out, score, then drl_grpo_update's advantages and
 * selection, old-policy pass, token selection, updates and finish. The trainer's grpo phase, its SPSA phase (which
 * stops after the old-policy pass and evaluates the surrogate at perturbed parameters) and the C API all run it.
 *
 * Random streams: the prompts of shard s at the job's step are draws [s n, (s + 1) n) of the DRL_RNG_DATA prompt
 * stream of that step (n prompts per shard), and their rollouts are rollouts [s n G, (s + 1) n G) of the step's
 * sampling stream, so a shard samples the same wherever it runs. */
#ifndef DRL_GRPO_ITERATE_H
#define DRL_GRPO_ITERATE_H

#include <dynrl.h>
#include <stdint.h>

#include "engine/grpo_update.h"
#include "engine/run.h"
#include "samplers/rollout.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where rewards come from: a host callback on tokens (fn) or on decoded text (text_fn), or when both are NULL the
 * run's own scoring (drl_run_score). */
typedef struct drl_reward_source {
  drl_reward_fn fn;
  drl_text_reward_fn text_fn;
  void *user;
} drl_reward_source;

/* An iteration's buffers for `shards` shards of n prompts x G rollouts of up to T tokens: the prompts and rollouts
 * of each shard, their rewards, and the update's state. */
typedef struct drl_grpo_iteration {
  int shards, n, G, T;
  int first_shard;             /* global index of this rank's first shard */
  drl_rollout sampler;
  drl_rollout_batch *rollouts; /* [shards] */
  drl_grpo_update_batch *batch; /* [shards]: views of the rollouts with their rewards */
  int32_t *prompts;             /* [shards][n x longest prompt] */
  int64_t *offsets;            /* [shards][n + 1] */
  int64_t *examples;           /* [shards][n]: each prompt's training example (-1: a caller's own prompt) */
  int64_t prompt_cap;          /* tokens of room per shard */
  float *rewards;              /* [shards][n G] */
  drl_grpo_update_state rl;
} drl_grpo_iteration;

/* Where an iteration stands. */
typedef struct drl_grpo_iterate_at {
  int64_t step;         /* the job's global step: the counter of the prompt and sampling streams */
  int iteration, total; /* 1-based iteration of the phase's total (the D3S schedule) */
} drl_grpo_iterate_at;

/* Buffers for this rank's shards of r's data parallelism (or `shards` shards from global shard first_shard when
 * shards > 0: the SPSA contributions), n prompts of up to prompt_cap tokens each per shard, rollouts of up to T
 * tokens. */
drl_status drl_grpo_iterate_create(drl_grpo_iteration *g, drl_run *r, int shards, int first_shard, int n,
                                   int64_t prompt_cap, int T);

/* Frees the buffers; safe on a zeroed one. */
void drl_grpo_iterate_free(drl_grpo_iteration *g, drl_run *r);

/* One iteration: every shard's prompts drawn from the training set, rolled out, scored by src, then drl_grpo_update. */
drl_status drl_grpo_iterate(drl_grpo_iteration *g, drl_run *r, const drl_reward_source *src,
                            const drl_grpo_iterate_at *at, drl_grpo_update_stats *stats);

/* The first stages only, for shard j: its prompts drawn, rolled out and scored (the batch and rewards of shard j). */
drl_status drl_grpo_iterate_sample(drl_grpo_iteration *g, drl_run *r, const drl_reward_source *src, int64_t step,
                                   int j);

/* Shard j's rollouts of the n given prompts (host tokens and offsets [n + 1] from 0) at the job's step. */
drl_status drl_grpo_iterate_roll_out(drl_grpo_iteration *g, drl_run *r, int64_t step, int j, const int32_t *tokens,
                             const int64_t *offsets, int n);

/* Shard j's rewards from src (fn NULL: the task's verifier). */
drl_status drl_grpo_iterate_score(drl_grpo_iteration *g, drl_run *r, const drl_reward_source *src, int j);

/* The update stages (drl_grpo_update) on the sampled shards with their rewards. */
drl_status drl_grpo_iterate_update(drl_grpo_iteration *g, drl_run *r, const drl_grpo_iterate_at *at,
                                   drl_grpo_update_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* DRL_GRPO_ITERATE_H */
