#include "rl_step.h"

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

static void shard_free(drl_rl_shard *h) {
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

static int shard_alloc(drl_rl_shard *h, int rows, int T) {
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

drl_status drl_rl_state_create(drl_rl_state *s, const drl_config *cfg, const drl_transformer *model, int shards,
                               int rows_max, int T_max) {
  memset(s, 0, sizeof *s);
  if (shards < 1) return DRL_FAIL(DRL_ERR_INVALID_ARG, "grpo: %d shards", shards);
  s->shards = shards;
  s->rows_max = rows_max;
  s->T_max = T_max;
  s->shard = (drl_rl_shard *)calloc((size_t)shards, sizeof *s->shard);
  int ok = s->shard != NULL;
  for (int j = 0; ok && j < shards; ++j) ok = shard_alloc(&s->shard[j], rows_max, T_max);
  if (!ok) {
    drl_rl_state_free(s, model);
    /* per token 5 floats, 2 ints and 3 flags, per row 2 words (shard_alloc) */
    size_t per_shard = (size_t)rows_max * T_max * (5 * 4 + 2 * 4 + 3) + (size_t)rows_max * 8;
    return drl_fail_oom("GRPO shard buffers", per_shard * (size_t)shards, "the host");
  }
  if (cfg->grpo.kl_beta > 0.0) {
    size_t bytes = (size_t)model->ps.layout.total * sizeof(float);
    drl_status st = drl_alloc(&model->dev, (void **)&s->ref_params, bytes, "KL reference parameters");
    if (st == DRL_OK) st = drl_copy_on_device(&model->dev, s->ref_params, model->ps.params, bytes);
    if (st != DRL_OK) {
      drl_rl_state_free(s, model);
      return st;
    }
  }
  return DRL_OK;
}

void drl_rl_state_free(drl_rl_state *s, const drl_transformer *model) {
  for (int j = 0; s->shard && j < s->shards; ++j) shard_free(&s->shard[j]);
  free(s->shard);
  if (s->ref_params && model) drl_free(&model->dev, s->ref_params);
  memset(s, 0, sizeof *s);
}

int drl_grad_fault_due(int rank, int64_t step) {
  return drl_fault_value("nan_grad", rank, step, NULL) || drl_fault_value("inf_grad", rank, step, NULL);
}

drl_status drl_bad_steps_record(drl_bad_steps *b, const char *phase, int64_t step, const char *what, int max,
                                const char *last_ckpt) {
  if (!what || !what[0]) {
    b->streak = 0;
    return DRL_OK;
  }
  b->total++;
  if (b->streak++ == 0 || !b->first[0]) snprintf(b->first, sizeof b->first, "%s", what);
  const char *kind = strcmp(b->first, "loss") == 0 ? "loss" : "gradient";
  if (max > 0 && b->streak >= max) {
    int none = !last_ckpt || !last_ckpt[0];
    return DRL_FAIL(DRL_ERR_NUMERIC, "%s step %lld: %lld consecutive steps with a non-finite %s (first in %s); "
                    "stopping; %s%s", phase, (long long)step, (long long)b->streak, kind, b->first,
                    none ? "no checkpoint was written" : "the last good checkpoint is ", none ? "" : last_ckpt);
  }
  drl_log(DRL_LOG_WARN, "%s step %lld: non-finite %s (in %s): the step is skipped (%lld skipped, %lld in a row)",
          phase, (long long)step, strcmp(what, "loss") == 0 ? "loss" : "gradient", what, (long long)b->total,
          (long long)b->streak);
  return DRL_OK;
}

/* Forward over kept rows [lo, hi) of a shard in chunks of at most the model's batch; log-probs (and entropies) land at
 * the rows' offsets. The updates use the same chunks, so the first epoch's ratio is exactly 1. */
static drl_status forward_rows(drl_transformer *m, drl_rl_shard *h, int lo, int hi, int T, float temperature,
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
static drl_status select_samples(drl_dp *dp, const drl_config *cfg, const drl_rl_batch *b, int k, int n_keep,
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
    return drl_pods_select(gl->rewards, gl->n_groups, G, n_keep, g->dr_grpo, (float)g->adv_eps, gl->keep, gl->adv);
  DRL_TRY(drl_grpo_advantages(gl->rewards, gl->n_groups, G, g->dr_grpo, (float)g->adv_eps, gl->adv));
  if (d->sampling == DRL_CFG_SAMPLING_D3S)
    return drl_d3s_select_samples(gl->adv, gl->n_groups, G, n_keep, (drl_d3s_scope)d->sample_scope, gl->keep);
  memset(gl->keep, 1, (size_t)gl->rows);
  return DRL_OK;
}

/* Compacts shard j's kept rows (global rows from `first`); targets are the next tokens of the response positions.
 * Returns the shard's response tokens. */
static int64_t compact_rows(drl_rl_shard *h, const drl_rl_batch *b, const rl_global *gl, int64_t first) {
  int rows = b->n_groups * b->G, T = b->T, k = 0;
  int64_t resp = 0;
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
    ++k;
  }
  h->kept = k;
  return resp;
}

/* Token level at batch scope across shards: every shard's candidate scores gathered, one cut, applied per shard. */
static drl_status select_tokens_batch(drl_dp *dp, drl_rl_state *s, const drl_rl_batch *b, double K) {
  int k = s->shards;
  int64_t local = 0;
  for (int j = 0; j < k; ++j) local += (int64_t)s->shard[j].kept * b[j].T;
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
    drl_rl_shard *h = &s->shard[j];
    st = drl_d3s_token_scores(h->row_adv, h->entropy, h->valid, NULL, h->kept, b[j].T, scores + at, &m[j]);
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
    drl_rl_shard *h = &s->shard[j];
    st = drl_d3s_apply_cut(h->row_adv, h->entropy, h->valid, NULL, h->kept, b[j].T, first, &cut, h->token_mask,
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
enum { SEL_RESP, SEL_CAND, SEL_KEPT_TOK, SEL_USEFUL, SEL_ENTROPY, SEL_DENOM, SEL_SIGNAL, SEL_N };
enum { UPD_LOSS, UPD_KL, UPD_TOKENS, UPD_CLIPPED, UPD_N };

drl_status drl_rl_step(drl_rl_state *s, drl_transformer *m, const drl_config *cfg, const drl_rl_batch *b,
                       drl_dp *dp, drl_balance *balance, int iteration, int total, int64_t *optim_step,
                       drl_rl_stats *out) {
  DRL_RANGE("grpo_iteration");
  memset(out, 0, sizeof *out);
  const drl_config_grpo *g = &cfg->grpo;
  const drl_config_d3s *d = &cfg->d3s;
  int k = s->shards;
  if (k != drl_dp_local(dp))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "grpo: state for %d shards, this rank runs %d", k, drl_dp_local(dp));
  for (int j = 0; j < k; ++j) {
    int rows = b[j].n_groups * b[j].G;
    if (rows > s->rows_max || b[j].T > s->T_max || b[j].T > m->T_max)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "grpo: batch of %d x %d exceeds the buffers (%d x %d)", rows, b[j].T,
                      s->rows_max, s->T_max);
    if (b[j].G != b[0].G) return DRL_FAIL(DRL_ERR_INVALID_ARG, "grpo: shards with group sizes %d and %d", b[0].G, b[j].G);
  }
  double t0 = drl_seconds();
  drl_d3s_schedule sched = {d->n_init, d->n_final, d->k_init, d->k_final, d->schedule};
  int n_keep = b[0].G;
  double K = 1.0;
  if (d->sampling != DRL_CFG_SAMPLING_NONE) DRL_TRY(drl_d3s_schedule_at(&sched, iteration, total, &n_keep, &K));

  /* Sample level on the whole batch (PODS re-normalises on its subset). */
  rl_global gl;
  memset(&gl, 0, sizeof gl);
  drl_status st = select_samples(dp, cfg, b, k, n_keep, &gl);
  if (st != DRL_OK) {
    global_free(&gl);
    return st;
  }
  double sum = 0, sq = 0;
  for (int i = 0; i < gl.rows; ++i) sum += gl.rewards[i];
  out->reward_mean = gl.rows ? sum / gl.rows : 0.0;
  for (int i = 0; i < gl.rows; ++i) sq += (gl.rewards[i] - out->reward_mean) * (gl.rewards[i] - out->reward_mean);
  out->reward_std = gl.rows ? sqrt(sq / gl.rows) : 0.0;
  double *sel_local = (double *)calloc((size_t)k * SEL_N, sizeof(double));
  if (!sel_local) {
    global_free(&gl);
    return DRL_FAIL(DRL_ERR_OOM, "out of memory for shard statistics");
  }
  int rows_all = gl.rows;
  int64_t kept_all = 0;
  for (int i = 0; i < gl.rows; ++i) kept_all += gl.keep[i];
  int64_t first = gl.first_row;
  for (int j = 0; j < k; ++j) {
    sel_local[j * SEL_N + SEL_RESP] = (double)compact_rows(&s->shard[j], &b[j], &gl, first);
    first += b[j].n_groups * b[j].G;
  }
  global_free(&gl);
  out->kept_samples = kept_all;
  /* Every shard splits its kept rows into the same number of minibatches (one optimizer step each). */
  int mbs = g->minibatches < kept_all ? g->minibatches : (kept_all > 0 ? (int)kept_all : 1);
  float temperature = (float)g->temperature;

  double t1 = drl_seconds();
  /* Old-policy pass (and the frozen reference), chunked exactly as the updates will be. */
  for (int j = 0; st == DRL_OK && j < k; ++j) {
    DRL_RANGE("old_policy");
    drl_rl_shard *h = &s->shard[j];
    int kj = h->kept, T = b[j].T;
    for (int mb = 0; st == DRL_OK && mb < mbs; ++mb)
      st = forward_rows(m, h, mb * kj / mbs, (mb + 1) * kj / mbs, T, temperature, h->old_lp, h->entropy);
    if (st == DRL_OK && s->ref_params) {
      float *own = m->ps.params;
      m->ps.params = s->ref_params;
      for (int mb = 0; st == DRL_OK && mb < mbs; ++mb)
        st = forward_rows(m, h, mb * kj / mbs, (mb + 1) * kj / mbs, T, temperature, h->ref_lp, NULL);
      m->ps.params = own;
    }
  }
  double t2 = drl_seconds();
  /* Token level. */
  if (st == DRL_OK) {
    DRL_RANGE("downsample");
    if (d->sampling == DRL_CFG_SAMPLING_D3S && d->token_level && d->token_scope == DRL_CFG_TOKENS_BATCH) {
      st = select_tokens_batch(dp, s, b, K);
    } else {
      for (int j = 0; st == DRL_OK && j < k; ++j) {
        drl_rl_shard *h = &s->shard[j];
        if (d->sampling == DRL_CFG_SAMPLING_D3S && d->token_level)
          st = drl_d3s_select_tokens(h->row_adv, h->entropy, h->valid, NULL, h->kept, b[j].T, K,
                                     DRL_D3S_TOKENS_SEQUENCE, h->token_mask, NULL);
        else
          memcpy(h->token_mask, h->valid, (size_t)h->kept * b[j].T);
      }
    }
  }
  double t3 = drl_seconds();
  drl_grpo_loss_cfg lc = {(float)g->clip_low, (float)g->clip_high, (float)g->dual_clip, (float)g->kl_beta,
                          (drl_loss_agg)g->loss_agg, g->max_new_tokens};
  for (int j = 0; st == DRL_OK && j < k; ++j) {
    drl_rl_shard *h = &s->shard[j];
    int T = b[j].T;
    double *v = sel_local + j * SEL_N;
    drl_d3s_stats ds;
    drl_d3s_measure(h->row_adv, NULL, h->valid, h->token_mask, h->kept, T, &ds);
    v[SEL_CAND] = (double)ds.candidate_tokens;
    v[SEL_KEPT_TOK] = (double)ds.kept_tokens;
    v[SEL_USEFUL] = (double)ds.useful_samples;
    for (int64_t n = 0; n < (int64_t)h->kept * T; ++n) v[SEL_ENTROPY] += h->valid[n] ? h->entropy[n] : 0.0;
    /* The aggregation's denominator is the whole batch's, so minibatch and shard losses add up to the batch loss. */
    v[SEL_DENOM] = drl_grpo_loss_denom(lc.agg, h->kept, T, h->token_mask);
    /* No kept token with a non-zero advantage (and no KL term) anywhere: the gradient is zero, and the optimizer
     * step is skipped (AdamW's momentum would still move the weights). */
    int signal = g->kl_beta > 0.0;
    for (int i = 0; i < h->kept && !signal; ++i)
      if (h->row_adv[i] != 0.0f)
        for (int t = 0; t < T && !signal; ++t) signal = h->token_mask[(size_t)i * T + t] != 0;
    v[SEL_SIGNAL] = signal;
  }
  double tot[SEL_N];
  if (st == DRL_OK) st = drl_dp_sum_shards(dp, sel_local, SEL_N, tot);
  free(sel_local);
  DRL_TRY(st);
  out->response_tokens = (int64_t)tot[SEL_RESP];
  out->response_len = rows_all ? tot[SEL_RESP] / rows_all : 0.0;
  out->candidate_tokens = (int64_t)tot[SEL_CAND];
  out->kept_tokens = (int64_t)tot[SEL_KEPT_TOK];
  out->usefulness = kept_all > 0 ? tot[SEL_USEFUL] / (double)kept_all : 0.0;
  out->entropy = tot[SEL_CAND] > 0 ? tot[SEL_ENTROPY] / tot[SEL_CAND] : 0.0;
  double denom = tot[SEL_DENOM];
  out->skipped = tot[SEL_SIGNAL] == 0.0;
  float lr = (float)(g->lr > 0 ? g->lr : cfg->optim.lr);
  out->lr = lr;

  /* Updates: per minibatch, every shard's gradient, summed over the job, then one optimizer step. */
  drl_grpo_stats *acc = (drl_grpo_stats *)calloc((size_t)k, sizeof *acc);
  if (!acc) return DRL_FAIL(DRL_ERR_OOM, "out of memory for update statistics");
  double *mb_loss = (double *)calloc((size_t)k, sizeof(double));
  if (!mb_loss) {
    free(acc);
    return DRL_FAIL(DRL_ERR_OOM, "out of memory for minibatch losses");
  }
  int rank = dp && dp->comm ? dp->comm->rank : 0;
  /* A non-finite loss or gradient ends the iteration's updates (out->bad): that update and the rest are skipped. */
  for (int epoch = 0; st == DRL_OK && epoch < g->ppo_epochs && kept_all > 0 && !out->skipped && !out->bad[0]; ++epoch) {
    for (int mb = 0; st == DRL_OK && mb < mbs && !out->bad[0]; ++mb) {
      DRL_RANGE("update");
      /* Value faults (kernels/fault.h) hit the iteration's first update, before the reduction. */
      int first_update = epoch == 0 && mb == 0;
      int inject_grad = first_update && drl_grad_fault_due(rank, s->fault_step);
      int inject_loss = first_update && drl_fault_value("nan_loss", rank, s->fault_step, NULL);
      for (int j = 0; st == DRL_OK && j < k; ++j) {
        drl_rl_shard *h = &s->shard[j];
        int T = b[j].T, lo = mb * h->kept / mbs, hi = (mb + 1) * h->kept / mbs;
        st = drl_params_zero_grads(&m->ps);
        mb_loss[j] = 0.0;
        for (int c = lo; st == DRL_OK && c < hi; c += m->B_max) {
          int B = hi - c < m->B_max ? hi - c : m->B_max;
          size_t off = (size_t)c * T;
          st = forward_rows(m, h, c, c + B, T, temperature, h->lp, NULL);
          drl_grpo_stats gs;
          if (st == DRL_OK)
            st = drl_grpo_loss(&lc, B, T, h->lp + off, h->old_lp + off, s->ref_params ? h->ref_lp + off : NULL,
                               h->row_adv + c, h->token_mask + off, denom, h->dlogprob + off, &gs);
          if (st != DRL_OK) break;
          if (inject_loss && j == 0) gs.loss = NAN;
          mb_loss[j] += gs.loss;
          drl_grpo_stats_merge(&acc[j], &gs);
          st = drl_balance_forward(balance, m, h->real + off);
          /* The last backward of this rank's last shard may start the gradient reduction as layers finish. */
          drl_dp_arm(dp, j == k - 1 && c + B >= hi && !inject_grad);
          if (st == DRL_OK) st = drl_transformer_backward(m, h->dlogprob + off);
        }
        if (st == DRL_OK && inject_grad && j == 0)
          st = drl_layout_inject_grad_fault(&m->dev, &m->ps.layout, m->ps.grads, rank, s->fault_step, NULL);
        if (st == DRL_OK) st = drl_dp_grads_push(dp, m->ps.grads);
      }
      if (st == DRL_OK) st = drl_dp_grads_reduce(dp, m->ps.grads);
      double loss = 0.0;
      if (st == DRL_OK) st = drl_dp_sum_shards(dp, mb_loss, 1, &loss);
      drl_optim_hparams hp = drl_optim_hparams_at(&cfg->optim, lr, *optim_step + 1);
      float norm = 0.0f;
      if (st == DRL_OK) st = drl_optim_step(dp, &m->ps, &hp, loss, &norm, out->bad);
      if (st == DRL_OK && !out->bad[0]) {
        ++*optim_step;
        st = drl_balance_step(balance, m, *optim_step, 1);
      } else if (st == DRL_OK) {
        drl_balance_discard(balance);
      }
      out->grad_norm = norm;
    }
  }
  free(mb_loss);
  double *upd_local = (double *)calloc((size_t)k * UPD_N, sizeof(double));
  if (st == DRL_OK && !upd_local) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for update statistics");
  for (int j = 0; st == DRL_OK && j < k; ++j) {
    upd_local[j * UPD_N + UPD_LOSS] = acc[j].loss;
    upd_local[j * UPD_N + UPD_KL] = acc[j].kl;
    upd_local[j * UPD_N + UPD_TOKENS] = (double)acc[j].tokens;
    upd_local[j * UPD_N + UPD_CLIPPED] = (double)acc[j].clipped;
  }
  free(acc);
  double u[UPD_N] = {0};
  if (st == DRL_OK) st = drl_dp_sum_shards(dp, upd_local, UPD_N, u);
  free(upd_local);
  if (st == DRL_OK) st = drl_device_sync(&m->dev);
  DRL_TRY(st);
  out->seconds_select = (t1 - t0) + (t3 - t2);
  out->seconds_old_policy = t2 - t1;
  out->seconds_update = drl_seconds() - t3;
  out->loss = u[UPD_LOSS] / (g->ppo_epochs > 0 ? g->ppo_epochs : 1);
  out->kl = u[UPD_KL] / (g->ppo_epochs > 0 ? g->ppo_epochs : 1);
  out->clip_frac = u[UPD_TOKENS] > 0 ? u[UPD_CLIPPED] / u[UPD_TOKENS] : 0.0;
  return DRL_OK;
}

drl_status drl_rl_prepare(drl_rl_state *s, drl_transformer *m, const drl_config *cfg, const drl_rl_batch *b) {
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
  drl_rl_shard *h = &s->shard[0];
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

drl_status drl_rl_surrogate(drl_rl_state *s, drl_transformer *m, const drl_config *cfg, const float *params,
                            double *loss) {
  const drl_config_grpo *g = &cfg->grpo;
  drl_rl_shard *h = &s->shard[0];
  float *own = m->ps.params;
  m->ps.params = (float *)params;
  drl_status st = forward_rows(m, h, 0, h->kept, h->T, (float)g->temperature, h->lp, NULL);
  m->ps.params = own;
  DRL_TRY(st);
  drl_grpo_loss_cfg lc = {(float)g->clip_low, (float)g->clip_high, (float)g->dual_clip, 0.0f,
                          (drl_loss_agg)g->loss_agg, g->max_new_tokens};
  drl_grpo_stats gs;
  DRL_TRY(drl_grpo_loss(&lc, h->kept, h->T, h->lp, h->old_lp, NULL, h->row_adv, h->token_mask, 0.0, h->dlogprob,
                        &gs));
  *loss = gs.loss;
  return DRL_OK;
}
