/* GRPO core on the host, with the arithmetic of verl (research note Part A): group-normalised advantages, the clipped
 * surrogate with clip-higher and dual clip, the k3 KL to a reference, and the four loss aggregations. Per-token arrays
 * are rows x T, row-major; a row is one response. Everything is computed in double and stored as float.
 *
 * Normalisation. The aggregated loss is linear in the per-token losses: every mode is the sum over loss tokens of
 * w[n] * L[n] with w[n] = 1 / (D * c[row]):
 *   token_mean               D = loss tokens,  c = 1              verl token-mean, TRL "dapo"
 *   seq_mean_token_mean      D = sequences,    c = the row's loss tokens   verl seq-mean-token-mean, TRL "grpo"
 *   seq_mean_token_sum       D = sequences,    c = 1              verl seq-mean-token-sum
 *   seq_mean_token_sum_norm  D = 1,            c = norm_len       verl seq-mean-token-sum-norm (sum / L_max on one
 *                                                                  rank; verl also averages it over its data ranks)
 *   dr_grpo_norm             D = sequences,    c = norm_len       TRL "dr_grpo" and the Dr. GRPO paper (sum / (B L_max))
 * norm_len is the constant L_max (grpo.max_new_tokens). "Sequences" are the rows of the optimizer step, those without
 * a loss token included (count_empty_rows: verl's trainer and TRL's .mean() count every row; D3S's token level leaves
 * some rows without one) or not. D is an explicit argument of drl_grpo_loss: the trainer sums drl_grpo_loss_denom over
 * the shards and ranks of one optimizer step (a minibatch) and passes the total, so every optimizer step is normalised
 * by its own tokens or sequences, as verl normalises each mini-batch over its data-parallel ranks. D = 0 means "this
 * call's own count". */
#ifndef DRL_GRPO_H
#define DRL_GRPO_H

#include <stdint.h>

#include <dynrl.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Same order as drl_cfg_loss_agg in engine/config.h, so a config value converts by a cast. */
typedef enum drl_loss_agg {
  DRL_AGG_TOKEN_MEAN,
  DRL_AGG_SEQ_MEAN_TOKEN_MEAN,
  DRL_AGG_SEQ_MEAN_TOKEN_SUM,
  DRL_AGG_SEQ_MEAN_TOKEN_SUM_NORM,
  DRL_AGG_DR_GRPO_NORM
} drl_loss_agg;

/* The ratio the surrogate clips (same order as drl_cfg_policy_loss). */
typedef enum drl_policy_loss {
  DRL_LOSS_GRPO, /* per token: rho_t = exp(lp_t - old_t), PPO clip, dual clip */
  DRL_LOSS_GSPO  /* per sequence (verl's gspo): s = exp(mean over the row's loss tokens of lp - old), its log clamped
                  * at 10; every token of the row takes the value max(-A s, -A clip(s)) and the derivative -A s (0 when
                  * clipped), the row's share of d s / d lp_t; no dual clip */
} drl_policy_loss;

typedef struct drl_grpo_loss_cfg {
  float clip_low;   /* ratio >= 1 - clip_low, in [0, 1) */
  float clip_high;  /* ratio <= 1 + clip_high, >= 0 */
  float dual_clip;  /* c > 1: for A < 0 the per-token loss is at most -c A */
  float kl_beta;    /* weight of the k3 KL to the reference, >= 0; 0 = off */
  drl_loss_agg agg;
  int norm_len;     /* L_max of seq_mean_token_sum_norm and dr_grpo_norm (>= 1 there; ignored otherwise) */
  drl_policy_loss loss;
  int count_empty_rows; /* the sequence-counting modes count rows without a loss token too */
} drl_grpo_loss_cfg;

/* What one drl_grpo_loss call measured. loss, pg_loss and kl carry the aggregation weights, so with a batch-wide
 * denominator they add up over minibatches to the batch's values; the counts let drl_grpo_stats_merge combine the
 * fractions. */
typedef struct drl_grpo_stats {
  double loss;           /* pg_loss + kl_beta * kl */
  double pg_loss;        /* aggregated clipped surrogate */
  double kl;             /* aggregated k3 KL (0 without a reference) */
  double clip_frac;      /* share of loss tokens whose PPO clip is the active branch (given the sign of A) */
  double dual_clip_frac; /* share of loss tokens with A < 0 where the dual clip -c A is the active branch */
  double ratio_mean;     /* mean ratio exp(clamped log-ratio) over loss tokens */
  int64_t tokens;        /* loss tokens (mask != 0) */
  int64_t clipped, dual_clipped;
} drl_grpo_stats;

/* Group-normalised advantages of n_groups groups of G consecutive rewards (A.1): (r - mean) / (std + eps) with the
 * Bessel std, or r - mean when dr_grpo; a group of one has mean 0 and std 1. An all-equal group gives exactly 0. */
drl_status drl_grpo_advantages(const float *rewards, int n_groups, int G, int dr_grpo, float eps, float *adv);

/* This call's part of the aggregation denominator D (see above): loss tokens for token_mean, 0 for
 * seq_mean_token_sum_norm (whose D is 1 whatever the batch), else its rows (all of them, or with count_empty_rows 0
 * those with a loss token). */
double drl_grpo_loss_denom(const drl_grpo_loss_cfg *cfg, int rows, int T, const uint8_t *mask);

/* Per-token clipped surrogate (+ kl_beta * k3 KL) aggregated by cfg->agg with denominator denom (0 = this call's own
 * count). adv is per row; ref_logprob may be NULL when kl_beta == 0. Writes dlogprob[n] = dLoss/dlogprob[n] (0 off the
 * mask) and, when stats is not NULL, the stats. All-masked input gives loss 0 and gradient 0. */
drl_status drl_grpo_loss(const drl_grpo_loss_cfg *cfg, int rows, int T, const float *logprob, const float *old_logprob,
                         const float *ref_logprob, const float *adv, const uint8_t *mask, double denom,
                         float *dlogprob, drl_grpo_stats *stats);

/* Adds the stats of one call (a minibatch) into acc: sums loss terms and counts, re-weights the means by tokens. */
void drl_grpo_stats_merge(drl_grpo_stats *acc, const drl_grpo_stats *s);

#ifdef __cplusplus
}
#endif
#endif /* DRL_GRPO_H */
