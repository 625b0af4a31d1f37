/* One GRPO iteration on a batch of scored rollouts (DESIGN §7): advantages on the full groups, D3S / PODS sample
 * selection, the old-policy pass (log-probs and entropies under the training forward), D3S token selection, then
 * ppo_epochs x minibatches clipped-surrogate updates. Shared by the trainer and the public API. */
#ifndef DRL_RL_STEP_H
#define DRL_RL_STEP_H

#include <stdint.h>

#include "engine/config.h"
#include "models/transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rollouts as the sampler lays them out: rows = n_groups x G (a prompt's rollouts adjacent), left-padded rows of T
 * tokens; mask[t] = 1 where position t predicts a generated token (t + 1). */
typedef struct drl_rl_batch {
  int n_groups, G, T;
  const int32_t *tokens;    /* [rows, T] */
  const int32_t *row_start; /* [rows] */
  const uint8_t *mask;      /* [rows, T] */
  const float *rewards;     /* [rows] */
} drl_rl_batch;

typedef struct drl_rl_stats {
  double reward_mean, reward_std;
  double loss, kl, clip_frac, entropy, grad_norm, lr;
  double usefulness;
  int64_t kept_samples, kept_tokens, candidate_tokens, response_tokens;
  double response_len;
  int skipped; /* no kept token carried a non-zero advantage: no update was made */
  /* Wall seconds of the phases: advantages and selections (sample and token level), the old-policy (and reference)
   * pass, the updates (device synchronised at the end). */
  double seconds_select, seconds_old_policy, seconds_update;
} drl_rl_stats;

/* Scratch and the frozen reference for drl_rl_step; sized for rows x T at creation. */
typedef struct drl_rl_state {
  int rows_max, T_max;
  float *adv, *old_lp, *ref_lp, *lp, *entropy, *dlogprob, *row_adv;
  int32_t *tokens, *targets, *row_start;
  uint8_t *keep, *valid, *token_mask;
  float *ref_params; /* device copy of the initial parameters when grpo.kl_beta > 0, else NULL */
  int *rows_idx;
} drl_rl_state;

/* Allocates the state for batches of up to rows_max x T_max; keeps a frozen copy of the model's current parameters
 * as the KL reference when cfg->grpo.kl_beta > 0. */
drl_status drl_rl_state_create(drl_rl_state *s, const drl_config *cfg, const drl_transformer *model, int rows_max,
                               int T_max);

/* Frees the state. */
void drl_rl_state_free(drl_rl_state *s, const drl_transformer *model);

/* Trains on batch at iteration `iteration` (1-based) of `total` (the D3S schedule's progress); *optim_step counts
 * AdamW steps across phases and is advanced. */
drl_status drl_rl_step(drl_rl_state *s, drl_transformer *model, const drl_config *cfg, const drl_rl_batch *batch,
                       int iteration, int total, int64_t *optim_step, drl_rl_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* DRL_RL_STEP_H */
