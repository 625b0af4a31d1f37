/* D3S, dynamic dual-level down-sampling (research note Part B), and PODS as its comparison baseline, on the host.
 *
 * Rows are rollouts: n_groups groups of G consecutive rows, one advantage per row, T token slots per row.
 * Sample level: keep the rollouts whose advantages have maximal variance, across the batch (cross) or per group
 * (intra). The advantages stay those of the full group (never recomputed); only PODS re-normalises on its subset.
 * Token level: among the valid tokens of kept rows, keep the top ceil(K n) by |A| * H (H: old-policy entropy).
 *
 * Tie-breaks (deterministic, independent of threads and call history):
 *  - maxvar_subset orders values by value descending, then index ascending, and returns the first a and the last
 *    k - a of that order, a being the smallest whose subset variance is within 1e-9 * (variance of all n values) of
 *    the maximum (so rounding noise between tied subsets never decides).
 *  - tokens are ranked by score descending, then flat index (row * T + t) ascending; exactly ceil(K n) are kept. */
#ifndef DRL_D3S_H
#define DRL_D3S_H

#include <stdint.h>

#include <dynrl.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Same order as drl_cfg_scope and drl_cfg_token_scope in engine/config.h. */
typedef enum drl_d3s_scope { DRL_D3S_CROSS, DRL_D3S_INTRA } drl_d3s_scope;
typedef enum drl_d3s_token_scope { DRL_D3S_TOKENS_BATCH, DRL_D3S_TOKENS_SEQUENCE } drl_d3s_token_scope;

/* The keep budgets at training progress p = step / total (clamped to [0, 1]; total <= 0 gives p = 0). */
typedef struct drl_d3s_schedule {
  int n_init, n_final;     /* rollouts kept per prompt, >= 1 */
  double k_init, k_final;  /* fraction of tokens kept, in (0, 1] */
  int enabled;             /* 0: the initial values throughout */
} drl_d3s_schedule;

/* The cut of a ranked list of candidate scores: candidate j (its ordinal in the list) is kept iff score[j] > score, or
 * score[j] == score and j <= index. Keeping nothing is {+inf, -1}. Across ranks: all-gather the candidate scores in
 * rank order, compute one cut, and let every rank apply it with its first ordinal (drl_d3s_apply_cut). */
typedef struct drl_d3s_cut {
  float score;
  int64_t index;
} drl_d3s_cut;

typedef struct drl_d3s_stats {
  int64_t samples, kept_samples;  /* rows, rows kept */
  int64_t useful_samples;         /* kept rows with a non-zero advantage */
  double usefulness;              /* useful_samples / kept_samples (0 when none kept) */
  int64_t candidate_tokens;       /* valid tokens of kept rows */
  int64_t kept_tokens;            /* tokens in the loss mask */
} drl_d3s_stats;

/* Indices (ascending) of a size-k subset of v[0..n) with maximal variance, in O(n log n + k); tie-break above. */
drl_status drl_d3s_maxvar_subset(const float *v, int n, int k, int *out_idx);

/* keep[row] = 1 for the rows D3S keeps from n_groups x G advantages: cross = one max-variance subset of
 * n_groups * n_keep rows over the batch, intra = n_keep rows per group; 0 elsewhere. Fails if n_keep > G. */
drl_status drl_d3s_select_samples(const float *adv, int n_groups, int G, int n_keep, drl_d3s_scope scope,
                                  uint8_t *keep);

/* PODS: per group keep the n_keep rows of maximal reward variance and write their advantages re-normalised on the
 * kept rewards (drl_grpo_advantages' arithmetic on the subset); dropped rows get keep 0 and advantage 0. */
drl_status drl_d3s_pods_select(const float *rewards, int n_groups, int G, int n_keep, int dr_grpo, float eps,
                               uint8_t *keep, float *adv);

/* Tokens to keep out of n candidates at fraction K in (0, 1]: ceil(K n), at least 1 when n > 0, 0 when n == 0
 * (K n within 1e-9 of an integer counts as that integer, so binary rounding of K never adds a token). */
int64_t drl_d3s_token_budget(int64_t n, double K);

/* Candidate tokens are the valid tokens (valid[n] != 0; valid NULL = all) of kept rows (keep_row[row] != 0; keep_row
 * NULL = all), in flat order n = row * T + t; a candidate's score is the float |adv[row]| * entropy[n]. */

/* Writes the scores of the m candidates, compacted in flat order, to scores (room for rows * T) and m. */
drl_status drl_d3s_token_scores(const float *adv, const float *entropy, const uint8_t *valid, const uint8_t *keep_row,
                                int rows, int T, float *scores, int64_t *m);

/* The cut keeping exactly k of m finite scores ranked by score descending, then ordinal ascending. O(m): a radix
 * select on the scores' order-preserving bits (four 256-bucket histograms, each an all-reduce when distributed). */
drl_status drl_d3s_token_cut(const float *scores, int64_t m, int64_t k, drl_d3s_cut *cut);

/* mask[n] = 1 for the candidates the cut keeps, 0 elsewhere; this call's candidates have ordinals first, first + 1, ...
 * (first = candidates on lower ranks; 0 on one rank). Writes the kept count when kept != NULL. */
drl_status drl_d3s_apply_cut(const float *adv, const float *entropy, const uint8_t *valid, const uint8_t *keep_row,
                             int rows, int T, int64_t first, const drl_d3s_cut *cut, uint8_t *mask, int64_t *kept);

/* mask[n] = 1 for the kept candidates: the top drl_d3s_token_budget(n, K) by score, n over the batch (batch scope) or
 * over each row (sequence scope); ties by flat index ascending. Writes the kept count when kept != NULL. */
drl_status drl_d3s_select_tokens(const float *adv, const float *entropy, const uint8_t *valid,
                                 const uint8_t *keep_row, int rows, int T, double K, drl_d3s_token_scope scope,
                                 uint8_t *mask, int64_t *kept);

/* N_s(p) = round((1 - p) n_init + p n_final) (halves away from zero) and K(p) = (1 - p) k_init + p k_final. */
drl_status drl_d3s_schedule_at(const drl_d3s_schedule *s, int64_t step, int64_t total, int *n_keep, double *K);

/* The metrics of one selection: keep per row (NULL = all kept), mask per token (NULL = every valid token of a kept
 * row), valid per token (NULL = all; only for the token counts). */
void drl_d3s_measure(const float *adv, const uint8_t *keep, const uint8_t *valid, const uint8_t *mask, int rows, int T,
                     drl_d3s_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* DRL_D3S_H */
