/* One GRPO iteration on a batch of scored rollouts (DESIGN §7): advantages on the full groups, D3S / PODS sample
 * selection, the old-policy pass (log-probs and entropies under the training forward), D3S token selection, then
 * ppo_epochs x minibatches clipped-surrogate updates. Shared by the trainer and the public API. Given the rollout's
 * entropies and one minibatch, the token selection comes first and the forwards skip what holds no loss token.
 *
 * Data parallel: the global batch is the concatenation of every shard's batch in shard order. Advantages and the
 * sample selection are computed on every rank from all the rewards (gathered), the token threshold from all the
 * candidate scores (gathered), and the loss normalisers and statistics are sums over shards, so the result is the
 * same whatever the number of ranks the shards are spread over. */
#ifndef DRL_GRPO_UPDATE_H
#define DRL_GRPO_UPDATE_H

#include <stdint.h>

#include "distributed/dp.h"
#include "engine/config.h"
#include "engine/moe_balance.h"
#include "engine/run.h"
#include "models/transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rollouts as the sampler lays them out: rows = n_groups x G (a prompt's rollouts adjacent), left-padded rows of T
 * tokens; mask[t] = 1 where position t predicts a generated token (t + 1). */
typedef struct drl_grpo_update_batch {
  int n_groups, G, T;
  const int32_t *tokens;    /* [rows, T] */
  const int32_t *row_start; /* [rows] */
  const uint8_t *mask;      /* [rows, T] */
  const float *rewards;     /* [rows] */
  /* [rows, T] or NULL: the rollout's recorded entropies (samplers/rollout.h: the training forward's within rounding).
   * Given, D3S chooses its tokens from them before any forward, and with one minibatch the old-policy pass and the
   * updates run only on rows with a loss token, cut after their last one (with one epoch too, the update's own
   * forward gives the old log-probs: no separate pass); NULL: from the old-policy pass. */
  const float *entropy;
} drl_grpo_update_batch;

typedef struct drl_grpo_update_stats {
  double reward_mean, reward_std;
  double loss, kl, clip_frac, entropy, grad_norm, lr;
  double usefulness;
  int64_t kept_samples, kept_tokens, candidate_tokens, response_tokens;
  int64_t positions; /* trunk positions (rows x columns) each forward of the iteration runs over, on this rank */
  double response_len;
  int skipped; /* no kept token carried a non-zero advantage: no update was made */
  /* A non-finite loss or gradient stopped the iteration's updates at that one (the earlier ones stand): "loss" or
   * the first tensor holding a non-finite value; "" when every update was finite. */
  char bad[DRL_TENSOR_NAME_CAP];
  /* Wall seconds of the phases: advantages and selections (sample and token level), the old-policy (and reference)
   * pass, the updates (device synchronised at the end). */
  double seconds_select, seconds_old_policy, seconds_update;
} drl_grpo_update_stats;

/* One shard's scratch: its kept rows compacted, their log-probs, entropies and masks. */
typedef struct drl_grpo_update_shard {
  int kept; /* rows kept by the sample level */
  int T;    /* their length (drl_grpo_update_prepare) */
  float *old_lp, *ref_lp, *lp, *entropy, *dlogprob, *row_adv;
  int32_t *tokens, *targets, *row_start;
  uint8_t *valid, *token_mask;
  uint8_t *real;            /* positions holding a prompt or response token (not padding): MoE statistics */
} drl_grpo_update_shard;

/* Scratch for this rank's shards and the frozen reference; sized for rows_max x T_max per shard at creation. */
typedef struct drl_grpo_update_state {
  int shards, rows_max, T_max;
  int64_t fault_step;   /* the job's step of the iteration, for the value faults of kernels/fault.h */
  drl_grpo_update_shard *shard; /* [shards] */
  float *ref_params;            /* device copy of the initial parameters when grpo.kl_beta > 0, else NULL */
} drl_grpo_update_state;

/* Allocates the state for `shards` local shards (drl_dp_local) of up to rows_max x T_max; keeps a frozen copy of the
 * model's current parameters as the KL reference when cfg->grpo.kl_beta > 0. */
drl_status drl_grpo_update_state_create(drl_grpo_update_state *s, const drl_config *cfg, const drl_transformer *model,
                                        int shards, int rows_max, int T_max);

/* Frees the state. */
void drl_grpo_update_state_free(drl_grpo_update_state *s, const drl_transformer *model);

/* Trains on the batches of this rank's shards (batch[s->shards], in shard order) at iteration `iteration`
 * (1-based) of `total` (the D3S schedule's progress); *optim_step counts AdamW steps across phases and is advanced.
 * balance (NULL: none) counts the MoE routes of the update forwards and takes its step after each optimizer step.
 * With dp, the selections, normalisers and gradients span every shard of the job (distributed/dp.h); dp NULL is one
 * process with one shard. */
drl_status drl_grpo_update(drl_grpo_update_state *s, drl_transformer *model, const drl_config *cfg,
                           const drl_grpo_update_batch *batch, drl_dp *dp, drl_moe_balance *balance, int iteration,
                           int total, int64_t *optim_step, drl_grpo_update_stats *stats);

/* For zeroth-order training on the GRPO surrogate: prepares shard 0 of s from batch (advantages over its groups,
 * every response token in the loss, old log-probs under the model's current parameters), so that
 * drl_grpo_update_surrogate evaluates the loss at other parameters. */
drl_status drl_grpo_update_prepare(drl_grpo_update_state *s, drl_transformer *model, const drl_config *cfg,
                                   const drl_grpo_update_batch *batch);

/* The clipped surrogate (grpo.loss_agg over the prepared tokens) under params (a device buffer of the model's
 * layout), into *loss; the model's own parameters are left as they were. */
drl_status drl_grpo_update_surrogate(drl_grpo_update_state *s, drl_transformer *model, const drl_config *cfg,
                                     const float *params, double *loss);

#ifdef __cplusplus
}
#endif
#endif /* DRL_GRPO_UPDATE_H */
