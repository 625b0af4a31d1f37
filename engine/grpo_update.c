#include "grpo_update.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/d3s.h"
#include "engine/grpo.h"
#include "engine/log.h"
#include "engine/optim.h"
#include "kernels/fault.h"
#include "kernels/nvtx.h"

/* The configuration's enums convert to the modules' by value. */
_Static_assert((int)DRL_CFG_AGG_TOKEN_MEAN == (int)DRL_AGG_TOKEN_MEAN,
               "grpo.loss_agg and d3s.sample_scope convert by value");
_Static_assert((int)DRL_CFG_AGG_SEQ_MEAN_TOKEN_MEAN == (int)DRL_AGG_SEQ_MEAN_TOKEN_MEAN,
               "grpo.loss_agg and d3s.sample_scope convert by value");
_Static_assert((int)DRL_CFG_AGG_SEQ_MEAN_TOKEN_SUM == (int)DRL_AGG_SEQ_MEAN_TOKEN_SUM,
               "grpo.loss_agg and d3s.sample_scope convert by value");
_Static_assert((int)DRL_CFG_AGG_SEQ_MEAN_TOKEN_SUM_NORM == (int)DRL_AGG_SEQ_MEAN_TOKEN_SUM_NORM,
               "grpo.loss_agg and d3s.sample_scope convert by value");
_Static_assert((int)DRL_CFG_AGG_DR_GRPO_NORM == (int)DRL_AGG_DR_GRPO_NORM, "grpo.loss_agg converts by value");
_Static_assert((int)DRL_CFG_SCOPE_CROSS == (int)DRL_D3S_CROSS, "grpo.loss_agg and d3s.sample_scope convert by value");
_Static_assert((int)DRL_CFG_SCOPE_INTRA == (int)DRL_D3S_INTRA, "grpo.loss_agg and d3s.sample_scope convert by value");

static void shard_free(drl_grpo_update_shard *h) {
  free(h->old_lp);
  free(h->ref_lp);
  free(h->lp);
  free(h->entropy);
  free(h->dlogprob);
  free(h->row_adv);
  free(h->tokens);
  free(h->targets);
  free(h->row_start);
  free(h->valid);
  free(h->token_mask);
  free(h->real);
  memset(h, 0, sizeof *h);
}

static int shard_alloc(drl_grpo_update_shard *h, int rows, int T) {
  size_t n = (size_t)rows * (size_t)T, r = (size_t)rows;
  h->row_adv = (float *)malloc(r * sizeof(float));
  h->old_lp = (float *)malloc(n * sizeof(float));
  h->ref_lp = (float *)malloc(n * sizeof(float));
  h->lp = (float *)malloc(n * sizeof(float));
  h->entropy = (float *)malloc(n * sizeof(float));
  h->dlogprob = (float *)malloc(n * sizeof(float));
  h->tokens = (int32_t *)malloc(n * sizeof(int32_t));
  h->targets = (int32_t *)malloc(n * sizeof(int32_t));
  h->row_start = (int32_t *)malloc(r * sizeof(int32_t));
  h->valid = (uint8_t *)malloc(n);
  h->token_mask = (uint8_t *)malloc(n);
  h->real = (uint8_t *)malloc(n);
  return h->row_adv && h->old_lp && h->ref_lp && h->lp && h->entropy && h->dlogprob && h->tokens && h->targets &&
         h->row_start && h->valid && h->token_mask && h->real;
}

drl_status drl_grpo_update_state_create(drl_grpo_update_state *s, const drl_config *cfg, const drl_transformer *model,
                                        int shards, int rows_max, int T_max) {
  memset(s, 0, sizeof *s);
  if (shards < 1) return DRL_FAIL(DRL_ERR_INVALID_ARG, "grpo: %d shards", shards);
  s->shards = shards;
  s->rows_max = rows_max;
  s->T_max = T_max;
  s->shard = (drl_grpo_update_shard *)calloc((size_t)shards, sizeof *s->shard);
  int ok = s->shard != NULL;
  for (int j = 0; ok && j < shards; ++j) ok = shard_alloc(&s->shard[j], rows_max, T_max);
  if (!ok) {
    drl_grpo_update_state_free(s, model);
    /* per token 5 floats, 2 ints and 3 flags, per row 2 words (shard_alloc) */
    size_t per_shard = (size_t)rows_max * T_max * (5 * 4 + 2 * 4 + 3) + (size_t)rows_max * 8;
    return drl_fail_oom("GRPO shard buffers", per_shard * (size_t)shards, "the host");
  }
  if (cfg->grpo.kl_beta > 0.0) {
    size_t bytes = (size_t)model->ps.layout.total * sizeof(float);
    drl_status st = drl_alloc(&model->dev, (void **)&s->ref_params, bytes, "KL reference parameters");
    if (st == DRL_OK) st = drl_copy_on_device(&model->dev, s->ref_params, model->ps.params, bytes);
    if (st != DRL_OK) {
      drl_grpo_update_state_free(s, model);
      return st;
    }
  }
  return DRL_OK;
}

void drl_grpo_update_state_free(drl_grpo_update_state *s, const drl_transformer *model) {
  for (int j = 0; s->shard && j < s->shards; ++j) shard_free(&s->shard[j]);
  free(s->shard);
  if (s->ref_params && model) drl_free(&model->dev, s->ref_params);
  memset(s, 0, sizeof *s);
}

/* Forward over kept rows [lo, hi) of a shard in chunks of at most the model's batch; log-probs (and entropies) land at
 * the rows' offsets. The updates use the same chunks, so the first epoch's ratio is exactly 1. */
static drl_status forward_rows(drl_transformer *m, drl_grpo_update_shard *h, int lo, int hi, int T, float temperature,
                               float *lp, float *ent) {
  for (int c = lo; c < hi; c += m->B_max) {
    int B = hi - c < m->B_max ? hi - c : m->B_max;
    size_t off = (size_t)c * T;
    DRL_TRY(drl_transformer_forward(m, h->tokens + off, h->targets + off, h->row_start + c, B, T, temperature,
                                    lp + off, ent ? ent + off : NULL));
  }
  return DRL_OK;
}

/* Everything gathered from every shard of the job, in shard order. */
typedef struct rl_global {
  float *rewards, *adv; /* [rows] */
  uint8_t *keep;        /* [rows] */
  int rows, n_groups;
  int64_t first_row;    /* global row of this rank's first shard */
} rl_global;

static void global_free(rl_global *g) {
  free(g->rewards);
  free(g->adv);
  free(g->keep);
  memset(g, 0, sizeof *g);
}

/* Gathers every shard's rewards; on every rank computes the advantages (the full groups) and the sample selection. */
static drl_status select_samples(drl_dp *dp, const drl_config *cfg, const drl_grpo_update_batch *b, int k, int n_keep,
                                 rl_global *gl) {
  const drl_config_grpo *g = &cfg->grpo;
  const drl_config_d3s *d = &cfg->d3s;
  int rows_local = 0;
  for (int j = 0; j < k; ++j) rows_local += b[j].n_groups * b[j].G;
  float *mine = (float *)malloc((size_t)(rows_local ? rows_local : 1) * sizeof(float));
  if (!mine) return DRL_FAIL(DRL_ERR_OOM, "out of memory for %d rewards", rows_local);
  for (int j = 0, at = 0; j < k; at += b[j].n_groups * b[j].G, ++j)
    memcpy(mine + at, b[j].rewards, (size_t)b[j].n_groups * b[j].G * sizeof(float));
  size_t total = 0;
  int R = dp && dp->comm ? dp->comm->size : 1;
  size_t *counts = (size_t *)malloc((size_t)R * sizeof(size_t));
  drl_status st = counts ? drl_dp_gather(dp, mine, (size_t)rows_local * sizeof(float), (void **)&gl->rewards, &total,
                                         counts)
                         : DRL_FAIL(DRL_ERR_OOM, "out of memory for gather counts");
  free(mine);
  if (st == DRL_OK) {
    int me = dp && dp->comm ? dp->comm->rank : 0;
    for (int r = 0; r < me; ++r) gl->first_row += (int64_t)(counts[r] / sizeof(float));
    gl->rows = (int)(total / sizeof(float));
    gl->n_groups = gl->rows / b[0].G;
    gl->adv = (float *)malloc((size_t)(gl->rows ? gl->rows : 1) * sizeof(float));
    gl->keep = (uint8_t *)malloc((size_t)(gl->rows ? gl->rows : 1));
    if (!gl->adv || !gl->keep) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for %d advantages", gl->rows);
  }
  free(counts);
  if (st != DRL_OK) return st;
  DRL_RANGE("advantages");
  int G = b[0].G;
  if (d->sampling == DRL_CFG_SAMPLING_PODS)
    return drl_d3s_pods_select(gl->rewards, gl->n_groups, G, n_keep, g->dr_grpo, (float)g->adv_eps, gl->keep, gl->adv);
  DRL_TRY(drl_grpo_advantages(gl->rewards, gl->n_groups, G, g->dr_grpo, (float)g->adv_eps, gl->adv));
  if (d->sampling == DRL_CFG_SAMPLING_D3S)
    return drl_d3s_select_samples(gl->adv, gl->n_groups, G, n_keep, (drl_d3s_scope)d->sample_scope, gl->keep);
  memset(gl->keep, 1, (size_t)gl->rows);
  return DRL_OK;
}

/* Compacts shard j's kept rows (global rows from `first`); targets are the next tokens of the response positions.
 * Returns the shard's response tokens. */
static int64_t compact_rows(drl_grpo_update_shard *h, const drl_grpo_update_batch *b, const rl_global *gl,
                            int64_t first) {
  int rows = b->n_groups * b->G, T = b->T, k = 0;
  int64_t resp = 0;
  h->T = T;
  for (int i = 0; i < rows; ++i) {
    for (int t = 0; t < T; ++t) resp += b->mask[(size_t)i * T + t] != 0;
    if (!gl->keep[first + i]) continue;
    h->row_adv[k] = gl->adv[first + i];
    h->row_start[k] = b->row_start[i];
    int end = b->row_start[i]; /* one past the last real token: the last generated one */
    for (int t = 0; t < T; ++t) {
      size_t src = (size_t)i * T + t, dst = (size_t)k * T + t;
      h->tokens[dst] = b->tokens[src];
      h->valid[dst] = b->mask[src] && t + 1 < T;
      h->targets[dst] = h->valid[dst] ? b->tokens[src + 1] : -1;
      if (b->mask[src]) end = t + 2;
    }
    for (int t = 0; t < T; ++t) h->real[(size_t)k * T + t] = t >= b->row_start[i] && t < end;
    if (b->entropy) memcpy(h->entropy + (size_t)k * T, b->entropy + (size_t)i * T, (size_t)T * sizeof(float));
    ++k;
  }
  h->kept = k;
  return resp;
}

/* Token level at batch scope across shards: every shard's candidate scores gathered, one cut, applied per shard. */
static drl_status select_tokens_batch(drl_dp *dp, drl_grpo_update_state *s, double K) {
  int k = s->shards;
  int64_t local = 0;
  for (int j = 0; j < k; ++j) local += (int64_t)s->shard[j].kept * s->shard[j].T;
  float *scores = (float *)malloc((size_t)(local ? local : 1) * sizeof(float));
  int64_t *m = (int64_t *)malloc((size_t)k * sizeof(int64_t));
  if (!scores || !m) {
    free(scores);
    free(m);
    return DRL_FAIL(DRL_ERR_OOM, "out of memory for %lld token scores", (long long)local);
  }
  drl_status st = DRL_OK;
  int64_t at = 0;
  for (int j = 0; st == DRL_OK && j < k; ++j) {
    drl_grpo_update_shard *h = &s->shard[j];
    st = drl_d3s_token_scores(h->row_adv, h->entropy, h->valid, NULL, h->kept, h->T, scores + at, &m[j]);
    at += m[j];
  }
  float *all = NULL;
  size_t total = 0;
  int R = dp && dp->comm ? dp->comm->size : 1;
  size_t *counts = (size_t *)malloc((size_t)R * sizeof(size_t));
  if (st == DRL_OK && !counts) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for gather counts");
  if (st == DRL_OK) st = drl_dp_gather(dp, scores, (size_t)at * sizeof(float), (void **)&all, &total, counts);
  drl_d3s_cut cut;
  int64_t n_all = (int64_t)(total / sizeof(float)), first = 0;
  if (st == DRL_OK) st = drl_d3s_token_cut(all, n_all, drl_d3s_token_budget(n_all, K), &cut);
  int me = dp && dp->comm ? dp->comm->rank : 0;
  for (int r = 0; st == DRL_OK && r < me; ++r) first += (int64_t)(counts[r] / sizeof(float));
  for (int j = 0; st == DRL_OK && j < k; ++j) {
    drl_grpo_update_shard *h = &s->shard[j];
    st = drl_d3s_apply_cut(h->row_adv, h->entropy, h->valid, NULL, h->kept, h->T, first, &cut, h->token_mask,
                           NULL);
    first += m[j];
  }
  free(all);
  free(counts);
  free(scores);
  free(m);
  return st == DRL_OK ? DRL_OK : drl_fail_context(st, "D3S token selection");
}

/* Per-shard values summed over the job's shards: the selection's counts, then the updates' statistics. */
enum { SEL_RESP, SEL_CAND, SEL_KEPT_TOK, SEL_USEFUL, SEL_ENTROPY, SEL_SIGNAL, SEL_N };
enum { UPD_LOSS, UPD_KL, UPD_TOKENS, UPD_CLIPPED, UPD_N };

/* One iteration's context, handed from stage to stage. */
typedef struct rl_iter {
  drl_grpo_update_state *s;
  drl_transformer *m;
  const drl_config *cfg;
  const drl_grpo_update_batch *b; /* [k] */
  drl_dp *dp;
  drl_moe_balance *balance;
  int k;                 /* this rank's shards */
  int n_keep;            /* D3S samples kept per group */
  double K;              /* D3S token fraction */
  int mbs;               /* minibatches of every shard */
  int64_t kept_all;      /* kept rows of the job */
  int rows_all;          /* rows of the job */
  double *denom;         /* [mbs]: each minibatch's loss denominator over the job (drl_grpo_loss_denom) */
  int64_t pruned_positions; /* this rank's trunk positions per forward after stage_prune */
  int old_from_update;      /* one update of the pruned rows: its own forward's log-probs are the old ones */
  double sel[SEL_N];     /* the selection's counts over the job */
  drl_grpo_loss_cfg lc;
  drl_grpo_stats *acc; /* [k] the updates' statistics per shard */
  drl_grpo_update_stats *out;
} rl_iter;

static drl_status check_batches(const rl_iter *it) {
  const drl_grpo_update_state *s = it->s;
  if (it->k != drl_dp_local(it->dp))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "grpo: state for %d shards, this rank runs %d", it->k, drl_dp_local(it->dp));
  for (int j = 0; j < it->k; ++j) {
    const drl_grpo_update_batch *b = &it->b[j];
    int rows = b->n_groups * b->G;
    if (rows > s->rows_max || b->T > s->T_max || b->T > it->m->T_max)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "grpo: batch of %d x %d exceeds the buffers (%d x %d)", rows, b->T,
                      s->rows_max, s->T_max);
    if (b->G != it->b[0].G)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "grpo: shards with group sizes %d and %d", it->b[0].G, b->G);
  }
  return DRL_OK;
}

/* Stage: advantages on the full groups and the sample level on the whole batch (PODS re-normalises on its subset);
 * every shard's kept rows compacted; the reward statistics. */
static drl_status stage_select_samples(rl_iter *it, double *resp) {
  rl_global gl;
  memset(&gl, 0, sizeof gl);
  drl_status st = select_samples(it->dp, it->cfg, it->b, it->k, it->n_keep, &gl);
  if (st == DRL_OK) {
    double sum = 0, sq = 0;
    for (int i = 0; i < gl.rows; ++i) sum += gl.rewards[i];
    it->out->reward_mean = gl.rows ? sum / gl.rows : 0.0;
    for (int i = 0; i < gl.rows; ++i)
      sq += (gl.rewards[i] - it->out->reward_mean) * (gl.rewards[i] - it->out->reward_mean);
    it->out->reward_std = gl.rows ? sqrt(sq / gl.rows) : 0.0;
    it->rows_all = gl.rows;
    for (int i = 0; i < gl.rows; ++i) it->kept_all += gl.keep[i];
    int64_t first = gl.first_row;
    for (int j = 0; j < it->k; ++j) {
      resp[j * SEL_N + SEL_RESP] = (double)compact_rows(&it->s->shard[j], &it->b[j], &gl, first);
      first += it->b[j].n_groups * it->b[j].G;
    }
  }
  global_free(&gl);
  it->out->kept_samples = it->kept_all;
  /* Every shard splits its kept rows into the same number of minibatches (one optimizer step each). */
  int mb = it->cfg->grpo.minibatches;
  it->mbs = mb < it->kept_all ? mb : (it->kept_all > 0 ? (int)it->kept_all : 1);
  return st;
}

/* Stage: the old-policy pass (and the frozen reference), chunked exactly as the updates will be, so the first
 * epoch's ratio is exactly 1. With old_from_update the policy's pass is left out: the single update's forward runs
 * the same rows in the same chunks with the same parameters, so it gives these log-probs bit for bit. */
static drl_status stage_old_policy(rl_iter *it) {
  DRL_RANGE("old_policy");
  drl_transformer *m = it->m;
  float temperature = (float)it->cfg->grpo.temperature;
  for (int j = 0; j < it->k; ++j) {
    drl_grpo_update_shard *h = &it->s->shard[j];
    int kj = h->kept, T = h->T, mbs = it->mbs;
    for (int mb = 0; mb < mbs && !it->old_from_update; ++mb)
      DRL_TRY(forward_rows(m, h, mb * kj / mbs, (mb + 1) * kj / mbs, T, temperature, h->old_lp, h->entropy));
    if (!it->s->ref_params) continue;
    float *own = m->ps.params;
    m->ps.params = it->s->ref_params;
    drl_status st = DRL_OK;
    for (int mb = 0; st == DRL_OK && mb < mbs; ++mb)
      st = forward_rows(m, h, mb * kj / mbs, (mb + 1) * kj / mbs, T, temperature, h->ref_lp, NULL);
    m->ps.params = own;
    DRL_TRY(st);
  }
  return DRL_OK;
}

/* Stage: the token level (D3S |A| H at batch or sequence scope; otherwise every response token). */
static drl_status stage_select_tokens(rl_iter *it) {
  DRL_RANGE("downsample");
  const drl_config_d3s *d = &it->cfg->d3s;
  int d3s = d->sampling == DRL_CFG_SAMPLING_D3S && d->token_level;
  if (d3s && d->token_scope == DRL_CFG_TOKENS_BATCH) return select_tokens_batch(it->dp, it->s, it->K);
  for (int j = 0; j < it->k; ++j) {
    drl_grpo_update_shard *h = &it->s->shard[j];
    if (d3s)
      DRL_TRY(drl_d3s_select_tokens(h->row_adv, h->entropy, h->valid, NULL, h->kept, h->T, it->K,
                                    DRL_D3S_TOKENS_SEQUENCE, h->token_mask, NULL));
    else
      memcpy(h->token_mask, h->valid, (size_t)h->kept * h->T);
  }
  return DRL_OK;
}

/* Each optimizer step is normalised by its own tokens or sequences: minibatch mb's denominator is the sum over the
 * job's shards of their rows [mb kept / mbs, (mb + 1) kept / mbs). */
static drl_status minibatch_denominators(rl_iter *it) {
  int mbs = it->mbs;
  double *local = (double *)calloc((size_t)it->k * mbs, sizeof(double));
  it->denom = (double *)calloc((size_t)mbs, sizeof(double));
  if (!local || !it->denom) {
    free(local);
    return DRL_FAIL(DRL_ERR_OOM, "out of memory for %d minibatch denominators", mbs);
  }
  for (int j = 0; j < it->k; ++j) {
    const drl_grpo_update_shard *h = &it->s->shard[j];
    int T = h->T;
    for (int mb = 0; mb < mbs; ++mb) {
      int lo = mb * h->kept / mbs, hi = (mb + 1) * h->kept / mbs;
      local[(size_t)j * mbs + mb] = drl_grpo_loss_denom(&it->lc, hi - lo, T, h->token_mask + (size_t)lo * T);
    }
  }
  drl_status st = drl_dp_sum_shards(it->dp, local, mbs, it->denom);
  free(local);
  return st;
}

/* Stage: what the selection kept, per shard, summed over the job: counts, entropy, the loss denominator, and
 * whether any kept token carries a signal. */
static drl_status stage_measure(rl_iter *it, double *local) {
  for (int j = 0; j < it->k; ++j) {
    drl_grpo_update_shard *h = &it->s->shard[j];
    int T = h->T;
    double *v = local + j * SEL_N;
    drl_d3s_stats ds;
    drl_d3s_measure(h->row_adv, NULL, h->valid, h->token_mask, h->kept, T, &ds);
    v[SEL_CAND] = (double)ds.candidate_tokens;
    v[SEL_KEPT_TOK] = (double)ds.kept_tokens;
    v[SEL_USEFUL] = (double)ds.useful_samples;
    for (int64_t n = 0; n < (int64_t)h->kept * T; ++n) v[SEL_ENTROPY] += h->valid[n] ? h->entropy[n] : 0.0;
    /* No kept token with a non-zero advantage (and no KL term) anywhere: the gradient is zero, and the optimizer
     * step is skipped (AdamW's momentum would still move the weights). */
    int signal = it->cfg->grpo.kl_beta > 0.0;
    for (int i = 0; i < h->kept && !signal; ++i)
      if (h->row_adv[i] != 0.0f)
        for (int t = 0; t < T && !signal; ++t) signal = h->token_mask[(size_t)i * T + t] != 0;
    v[SEL_SIGNAL] = signal;
  }
  DRL_TRY(drl_dp_sum_shards(it->dp, local, SEL_N, it->sel));
  drl_grpo_update_stats *out = it->out;
  out->response_tokens = (int64_t)it->sel[SEL_RESP];
  out->response_len = it->rows_all ? it->sel[SEL_RESP] / it->rows_all : 0.0;
  out->candidate_tokens = (int64_t)it->sel[SEL_CAND];
  out->kept_tokens = (int64_t)it->sel[SEL_KEPT_TOK];
  out->usefulness = it->kept_all > 0 ? it->sel[SEL_USEFUL] / (double)it->kept_all : 0.0;
  out->entropy = it->sel[SEL_CAND] > 0 ? it->sel[SEL_ENTROPY] / it->sel[SEL_CAND] : 0.0;
  out->skipped = it->sel[SEL_SIGNAL] == 0.0;
  return minibatch_denominators(it);
}

/* Stage, when the tokens were chosen before any forward (the rollout's entropies) and one minibatch takes every row:
 * drops the kept rows without a loss token and cuts every row after the last column holding one, restriding the
 * shard's buffers to that width. The loss and its gradient are the padded rows' (a dropped row or column holds no
 * loss token, and causal attention lets no later column reach an earlier one), and stage_measure has taken the
 * denominators and statistics of the full rows. */
static void stage_prune(rl_iter *it) {
  DRL_RANGE("prune");
  for (int j = 0; j < it->k; ++j) {
    drl_grpo_update_shard *h = &it->s->shard[j];
    const int T = h->T;
    int width = 1;
    for (int i = 0; i < h->kept; ++i)
      for (int t = T - 1; t >= width; --t)
        if (h->token_mask[(size_t)i * T + t]) {
          width = t + 1;
          break;
        }
    int k = 0;
    for (int i = 0; i < h->kept; ++i) {
      int any = 0;
      for (int t = 0; t < width && !any; ++t) any = h->token_mask[(size_t)i * T + t];
      if (!any) continue;
      /* row k < i or k == i with width <= T: the destination never overlaps a row not yet moved */
      size_t src = (size_t)i * T, dst = (size_t)k * width, w = (size_t)width;
      h->row_adv[k] = h->row_adv[i];
      h->row_start[k] = h->row_start[i];
      memmove(h->tokens + dst, h->tokens + src, w * sizeof(int32_t));
      memmove(h->targets + dst, h->targets + src, w * sizeof(int32_t));
      memmove(h->entropy + dst, h->entropy + src, w * sizeof(float));
      memmove(h->valid + dst, h->valid + src, w);
      memmove(h->token_mask + dst, h->token_mask + src, w);
      memmove(h->real + dst, h->real + src, w);
      ++k;
    }
    it->pruned_positions += (int64_t)k * width;
    h->kept = k;
    h->T = width;
  }
}

/* Shard j's gradient over its kept rows [lo, hi) of a minibatch, from zero, in chunks of the model's batch; its
 * summed loss into *loss. */
static drl_status shard_gradient(rl_iter *it, int j, int mb, int lo, int hi, drl_fault_values f, double *loss) {
  drl_transformer *m = it->m;
  drl_grpo_update_shard *h = &it->s->shard[j];
  int T = h->T, last_shard = j == it->k - 1;
  *loss = 0.0;
  DRL_TRY(drl_params_zero_grads(&m->ps));
  for (int c = lo; c < hi; c += m->B_max) {
    int B = hi - c < m->B_max ? hi - c : m->B_max;
    size_t off = (size_t)c * T;
    DRL_TRY(forward_rows(m, h, c, c + B, T, (float)it->cfg->grpo.temperature, h->lp, NULL));
    if (it->old_from_update) memcpy(h->old_lp + off, h->lp + off, (size_t)B * T * sizeof(float));
    drl_grpo_stats gs;
    DRL_TRY(drl_grpo_loss(&it->lc, B, T, h->lp + off, h->old_lp + off, it->s->ref_params ? h->ref_lp + off : NULL,
                          h->row_adv + c, h->token_mask + off, it->denom[mb], h->dlogprob + off, &gs));
    if (f.nan_loss && j == 0) gs.loss = NAN;
    *loss += gs.loss;
    drl_grpo_stats_merge(&it->acc[j], &gs);
    DRL_TRY(drl_moe_balance_forward(it->balance, m, h->real + off));
    /* The last backward of this rank's last shard may start the gradient reduction as layers finish. */
    drl_dp_arm(it->dp, last_shard && c + B >= hi && !f.grad);
    DRL_TRY(drl_transformer_backward(m, h->dlogprob + off));
  }
  if (f.grad && j == 0)
    DRL_TRY(drl_layout_inject_grad_fault(&m->dev, &m->ps.layout, m->ps.grads, drl_dp_rank(it->dp), it->s->fault_step,
                                         NULL));
  return drl_dp_grads_push(it->dp, m->ps.grads);
}

/* Stage: one minibatch update: every shard's gradient, summed over the job, then one optimizer step. */
static drl_status stage_update(rl_iter *it, int mb, drl_fault_values f, double *mb_loss, int64_t *optim_step) {
  DRL_RANGE("update");
  for (int j = 0; j < it->k; ++j) {
    int kept = it->s->shard[j].kept;
    DRL_TRY(shard_gradient(it, j, mb, mb * kept / it->mbs, (mb + 1) * kept / it->mbs, f, &mb_loss[j]));
  }
  DRL_TRY(drl_dp_grads_reduce(it->dp, it->m->ps.grads));
  double loss = 0.0;
  DRL_TRY(drl_dp_sum_shards(it->dp, mb_loss, 1, &loss));
  drl_optim_hparams hp = drl_optim_hparams_at(&it->cfg->optim, (float)it->out->lr, *optim_step + 1);
  float norm = 0.0f;
  DRL_TRY(drl_optim_step(it->dp, &it->m->ps, &hp, loss, &norm, it->out->bad));
  it->out->grad_norm = norm;
  if (it->out->bad[0]) {
    drl_moe_balance_discard(it->balance);
    return DRL_OK;
  }
  ++*optim_step;
  return drl_moe_balance_step(it->balance, it->m, *optim_step, 1);
}

/* Stage: ppo_epochs x minibatches updates. A non-finite loss or gradient ends them (out->bad): that update and the
 * rest are skipped. Value faults (kernels/fault.h) hit the first update, before the reduction. */
static drl_status stage_updates(rl_iter *it, int64_t *optim_step) {
  const drl_config_grpo *g = &it->cfg->grpo;
  if (it->kept_all == 0 || it->out->skipped) return DRL_OK;
  double *mb_loss = (double *)calloc((size_t)it->k, sizeof(double));
  if (!mb_loss) return DRL_FAIL(DRL_ERR_OOM, "out of memory for minibatch losses");
  drl_fault_values none = {0, 0}, first = drl_fault_values_at(drl_dp_rank(it->dp), it->s->fault_step);
  drl_status st = DRL_OK;
  for (int epoch = 0; st == DRL_OK && epoch < g->ppo_epochs && !it->out->bad[0]; ++epoch)
    for (int mb = 0; st == DRL_OK && mb < it->mbs && !it->out->bad[0]; ++mb)
      st = stage_update(it, mb, epoch == 0 && mb == 0 ? first : none, mb_loss, optim_step);
  free(mb_loss);
  return st;
}

/* Stage: the updates' statistics summed over the job. */
static drl_status stage_finish(rl_iter *it) {
  double *local = (double *)calloc((size_t)it->k * UPD_N, sizeof(double));
  if (!local) return DRL_FAIL(DRL_ERR_OOM, "out of memory for update statistics");
  for (int j = 0; j < it->k; ++j) {
    local[j * UPD_N + UPD_LOSS] = it->acc[j].loss;
    local[j * UPD_N + UPD_KL] = it->acc[j].kl;
    local[j * UPD_N + UPD_TOKENS] = (double)it->acc[j].tokens;
    local[j * UPD_N + UPD_CLIPPED] = (double)it->acc[j].clipped;
  }
  double u[UPD_N] = {0};
  drl_status st = drl_dp_sum_shards(it->dp, local, UPD_N, u);
  free(local);
  DRL_TRY(st);
  DRL_TRY(drl_device_sync(&it->m->dev));
  /* each optimizer step's loss is normalised on its own: the iteration's loss is their mean */
  int steps = (it->cfg->grpo.ppo_epochs > 0 ? it->cfg->grpo.ppo_epochs : 1) * it->mbs;
  it->out->loss = u[UPD_LOSS] / steps;
  it->out->kl = u[UPD_KL] / steps;
  it->out->clip_frac = u[UPD_TOKENS] > 0 ? u[UPD_CLIPPED] / u[UPD_TOKENS] : 0.0;
  return DRL_OK;
}

drl_status drl_grpo_update(drl_grpo_update_state *s, drl_transformer *m, const drl_config *cfg,
                           const drl_grpo_update_batch *b, drl_dp *dp, drl_moe_balance *balance, int iteration,
                           int total, int64_t *optim_step, drl_grpo_update_stats *out) {
  DRL_RANGE("grpo_iteration");
  memset(out, 0, sizeof *out);
  const drl_config_grpo *g = &cfg->grpo;
  const drl_config_d3s *d = &cfg->d3s;
  rl_iter it;
  memset(&it, 0, sizeof it);
  it.s = s, it.m = m, it.cfg = cfg, it.b = b, it.dp = dp, it.balance = balance, it.k = s->shards, it.out = out;
  DRL_TRY(check_batches(&it));
  double t0 = drl_log_seconds();
  drl_d3s_schedule sched = {d->n_init, d->n_final, d->k_init, d->k_final, d->schedule};
  it.n_keep = b[0].G;
  it.K = 1.0;
  if (d->sampling != DRL_CFG_SAMPLING_NONE) DRL_TRY(drl_d3s_schedule_at(&sched, iteration, total, &it.n_keep, &it.K));
  drl_grpo_loss_cfg lc = {(float)g->clip_low, (float)g->clip_high, (float)g->dual_clip, (float)g->kl_beta,
                          (drl_loss_agg)g->loss_agg, g->max_new_tokens, (drl_policy_loss)g->loss, g->count_empty_rows};
  it.lc = lc;
  out->lr = (float)(g->lr > 0 ? g->lr : cfg->optim.lr);
  double *sel_local = (double *)calloc((size_t)it.k * SEL_N, sizeof(double));
  it.acc = (drl_grpo_stats *)calloc((size_t)it.k, sizeof *it.acc);
  drl_status st = sel_local && it.acc ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for shard statistics");
  if (st == DRL_OK) st = stage_select_samples(&it, sel_local);
  /* With the rollout's entropies the tokens are chosen first, so the forwards run only where a loss token is. */
  int prune = it.mbs == 1;
  for (int j = 0; j < it.k; ++j) prune = prune && b[j].entropy != NULL;
  double t_old = 0.0, t = drl_log_seconds();
  if (st == DRL_OK && !prune) st = stage_old_policy(&it);
  t_old += drl_log_seconds() - t;
  if (st == DRL_OK) st = stage_select_tokens(&it);
  if (st == DRL_OK) st = stage_measure(&it, sel_local);
  if (st == DRL_OK && prune) {
    stage_prune(&it);
    it.old_from_update = g->ppo_epochs == 1;
    t = drl_log_seconds();
    st = stage_old_policy(&it);
    t_old += drl_log_seconds() - t;
  }
  out->positions = prune ? it.pruned_positions : 0;
  for (int j = 0; !prune && j < it.k; ++j) out->positions += (int64_t)s->shard[j].kept * s->shard[j].T;
  double t3 = drl_log_seconds();
  if (st == DRL_OK) st = stage_updates(&it, optim_step);
  if (st == DRL_OK) st = stage_finish(&it);
  free(sel_local);
  free(it.acc);
  free(it.denom);
  DRL_TRY(st);
  out->seconds_select = t3 - t0 - t_old;
  out->seconds_old_policy = t_old;
  out->seconds_update = drl_log_seconds() - t3;
  return DRL_OK;
}

drl_status drl_grpo_update_prepare(drl_grpo_update_state *s, drl_transformer *m, const drl_config *cfg,
                                   const drl_grpo_update_batch *b) {
  const drl_config_grpo *g = &cfg->grpo;
  int rows = b->n_groups * b->G;
  if (rows > s->rows_max || b->T > s->T_max || b->T > m->T_max)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "grpo: batch of %d x %d exceeds the buffers (%d x %d)", rows, b->T,
                    s->rows_max, s->T_max);
  rl_global gl;
  memset(&gl, 0, sizeof gl);
  gl.rows = rows;
  gl.rewards = (float *)b->rewards;
  gl.adv = (float *)malloc((size_t)(rows ? rows : 1) * sizeof(float));
  gl.keep = (uint8_t *)malloc((size_t)(rows ? rows : 1));
  drl_status st = gl.adv && gl.keep ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for %d advantages", rows);
  if (st == DRL_OK) st = drl_grpo_advantages(b->rewards, b->n_groups, b->G, g->dr_grpo, (float)g->adv_eps, gl.adv);
  drl_grpo_update_shard *h = &s->shard[0];
  if (st == DRL_OK) {
    memset(gl.keep, 1, (size_t)rows);
    compact_rows(h, b, &gl, 0);
    h->T = b->T;
    memcpy(h->token_mask, h->valid, (size_t)h->kept * b->T);
    st = forward_rows(m, h, 0, h->kept, b->T, (float)g->temperature, h->old_lp, NULL);
  }
  free(gl.adv);
  free(gl.keep);
  return st;
}

drl_status drl_grpo_update_surrogate(drl_grpo_update_state *s, drl_transformer *m, const drl_config *cfg,
                                     const float *params, double *loss) {
  const drl_config_grpo *g = &cfg->grpo;
  drl_grpo_update_shard *h = &s->shard[0];
  float *own = m->ps.params;
  m->ps.params = (float *)params;
  drl_status st = forward_rows(m, h, 0, h->kept, h->T, (float)g->temperature, h->lp, NULL);
  m->ps.params = own;
  DRL_TRY(st);
  drl_grpo_loss_cfg lc = {(float)g->clip_low, (float)g->clip_high, (float)g->dual_clip, 0.0f,
                          (drl_loss_agg)g->loss_agg, g->max_new_tokens, (drl_policy_loss)g->loss, g->count_empty_rows};
  drl_grpo_stats gs;
  DRL_TRY(drl_grpo_loss(&lc, h->kept, h->T, h->lp, h->old_lp, NULL, h->row_adv, h->token_mask, 0.0, h->dlogprob,
                        &gs));
  *loss = gs.loss;
  return DRL_OK;
}
