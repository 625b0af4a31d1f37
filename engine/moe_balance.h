/* Load balancing of the MoE blocks during training (DESIGN §5, research note A.3-A.6, A.11).
 *
 * After each training forward (never an evaluation, rollout or old-policy pass) the routes of the real tokens are
 * counted per block and expert; with moe.balance: aux_loss the Switch/GShard loss alpha E sum_i f_i P_i of that
 * forward (f_i = count_i / (K T), P_i = the mean over its T tokens of s_i / sum_j s_j), divided by the shards of the
 * batch, is added, its gradient going to the router through the scores only. After each optimizer step the counts are summed over the job's shards (the
 * global batch), MaxVio_batch is measured, and with moe.balance: aux_free every block's bias takes one step,
 * b += u sign(c_bar - c) (or the proportional rule; optionally zero-mean; u = moe.bias_rate, moe.rl_bias_rate in RL
 * phases, decaying as u t0 / (t0 + t) with moe.bias_decay = t0; none after moe.freeze_after). The new bias routes from the next forward on, so a batch is never routed
 * with counts of itself. The bias is fp32 state of its own, never a parameter, and is checkpointed. */
#ifndef DRL_MOE_BALANCE_H
#define DRL_MOE_BALANCE_H

#include <stdint.h>

#include "distributed/dp.h"
#include "engine/config.h"
#include "models/transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_moe_balance {
  const drl_config *cfg;
  drl_dp *dp;            /* the job's shards (NULL: one process) */
  int L, E, K;           /* blocks, experts, top-k; L = 0 without MoE blocks */
  float *bias;           /* host [L E]: every block's bias (dense blocks' rows stay 0) */
  double *counts;        /* [L E + 2] this optimizer step, this rank's forwards (then the job's) */
  double *fwd_counts, *fwd_scores; /* [L E] scratch of one forward */
  float *aux;            /* [L E] scratch: the auxiliary loss's gradient */
  double aux_loss;       /* sum over this step's forwards of the auxiliary loss (all blocks) */
  int forwards;          /* forwards counted this step */
  double maxvio_batch;   /* of the last step, averaged over the MoE blocks */
  double *load;          /* [L E] of the last step: each expert's share of its block's routes */
  double last_aux_loss;  /* of the last step: the job's auxiliary loss per forward */
  int fresh;             /* a step has happened since the trainer last reported these */
} drl_moe_balance;

/* Sets up balancing for model's MoE blocks (nothing to do without any). */
drl_status drl_moe_balance_init(drl_moe_balance *b, const drl_config *cfg, const drl_transformer *model, drl_dp *dp);

/* Frees the host arrays; safe on a zeroed one. */
void drl_moe_balance_free(drl_moe_balance *b);

/* Whether the model has MoE blocks. */
int drl_moe_balance_active(const drl_moe_balance *b);

/* After a training forward of model and before its backward: counts the routes of the positions with real != 0
 * (host [B T] of that forward; NULL: all) and, with aux_loss, sets the auxiliary loss for the backward. b NULL or
 * inactive: nothing to do. */
drl_status drl_moe_balance_forward(drl_moe_balance *b, drl_transformer *model, const uint8_t *real);

/* After an optimizer step (collective: sums the counts over the job): MaxVio_batch, the expert loads, and the
 * aux_free bias step at optimizer step `step` (rl: an RL phase's rate), applied to model. */
drl_status drl_moe_balance_step(drl_moe_balance *b, drl_transformer *model, int64_t step, int rl);

/* Instead of drl_moe_balance_step for a skipped optimizer step: forgets the step's counts (no bias step, no
 * statistics). */
void drl_moe_balance_discard(drl_moe_balance *b);

/* Replaces the bias (host [L E], e.g. from a checkpoint) and routes model with it. */
drl_status drl_moe_balance_set_bias(drl_moe_balance *b, drl_transformer *model, const float *bias);

/* MaxVio of counts [L E] averaged over the MoE blocks; per_block (may be NULL) receives each block's ([L], dense
 * blocks 0). */
double drl_moe_balance_maxvio(const drl_moe_balance *b, const double *counts, double *per_block);

#ifdef __cplusplus
}
#endif
#endif /* DRL_MOE_BALANCE_H */
