#include "rl_step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/d3s.h"
#include "engine/grpo.h"
#include "engine/log.h"
#include "kernels/nvtx.h"

drl_status drl_rl_state_create(drl_rl_state *s, const drl_config *cfg, const drl_transformer *model, int rows_max,
                               int T_max) {
  memset(s, 0, sizeof *s);
  s->rows_max = rows_max;
  s->T_max = T_max;
  size_t n = (size_t)rows_max * (size_t)T_max, r = (size_t)rows_max;
  s->adv = (float *)malloc(r * sizeof(float));
  s->row_adv = (float *)malloc(r * sizeof(float));
  s->old_lp = (float *)malloc(n * sizeof(float));
  s->ref_lp = (float *)malloc(n * sizeof(float));
  s->lp = (float *)malloc(n * sizeof(float));
  s->entropy = (float *)malloc(n * sizeof(float));
  s->dlogprob = (float *)malloc(n * sizeof(float));
  s->tokens = (int32_t *)malloc(n * sizeof(int32_t));
  s->targets = (int32_t *)malloc(n * sizeof(int32_t));
  s->row_start = (int32_t *)malloc(r * sizeof(int32_t));
  s->keep = (uint8_t *)malloc(r);
  s->valid = (uint8_t *)malloc(n);
  s->token_mask = (uint8_t *)malloc(n);
  s->rows_idx = (int *)malloc(r * sizeof(int));
  if (!s->adv || !s->row_adv || !s->old_lp || !s->ref_lp || !s->lp || !s->entropy || !s->dlogprob || !s->tokens ||
      !s->targets || !s->row_start || !s->keep || !s->valid || !s->token_mask || !s->rows_idx) {
    drl_rl_state_free(s, model);
    return DRL_FAIL(DRL_ERR_OOM, "out of memory for GRPO buffers of %d x %d tokens", rows_max, T_max);
  }
  if (cfg->grpo.kl_beta > 0.0) {
    size_t bytes = (size_t)model->layout.total * sizeof(float);
    drl_status st = drl_alloc(&model->dev, (void **)&s->ref_params, bytes, "KL reference parameters");
    if (st == DRL_OK) st = drl_copy_on_device(&model->dev, s->ref_params, model->params, bytes);
    if (st != DRL_OK) {
      drl_rl_state_free(s, model);
      return st;
    }
  }
  return DRL_OK;
}

void drl_rl_state_free(drl_rl_state *s, const drl_transformer *model) {
  free(s->adv);
  free(s->row_adv);
  free(s->old_lp);
  free(s->ref_lp);
  free(s->lp);
  free(s->entropy);
  free(s->dlogprob);
  free(s->tokens);
  free(s->targets);
  free(s->row_start);
  free(s->keep);
  free(s->valid);
  free(s->token_mask);
  free(s->rows_idx);
  if (s->ref_params && model) drl_free(&model->dev, s->ref_params);
  memset(s, 0, sizeof *s);
}

/* Forward over kept rows [lo, hi) in chunks of at most the model's batch; log-probs (and entropies) land at the rows'
 * offsets. The updates use the same chunks, so the first epoch's ratio is exactly 1. */
static drl_status forward_rows(drl_transformer *m, drl_rl_state *s, int lo, int hi, int T, float temperature,
                               float *lp, float *ent) {
  for (int c = lo; c < hi; c += m->B_max) {
    int B = hi - c < m->B_max ? hi - c : m->B_max;
    size_t off = (size_t)c * T;
    DRL_TRY(drl_transformer_forward(m, s->tokens + off, s->targets + off, s->row_start + c, B, T, temperature,
                                    lp + off, ent ? ent + off : NULL));
  }
  return DRL_OK;
}

drl_status drl_rl_step(drl_rl_state *s, drl_transformer *m, const drl_config *cfg, const drl_rl_batch *b,
                       int iteration, int total, int64_t *optim_step, drl_rl_stats *out) {
  DRL_RANGE("grpo_iteration");
  memset(out, 0, sizeof *out);
  const drl_config_grpo *g = &cfg->grpo;
  const drl_config_d3s *d = &cfg->d3s;
  int rows = b->n_groups * b->G, T = b->T;
  if (rows > s->rows_max || T > s->T_max || T > m->T_max)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "grpo: batch of %d x %d exceeds the buffers (%d x %d)", rows, T, s->rows_max,
                    s->T_max);
  /* Rewards and their spread. */
  double sum = 0, sq = 0;
  for (int i = 0; i < rows; ++i) sum += b->rewards[i];
  out->reward_mean = sum / rows;
  for (int i = 0; i < rows; ++i) sq += (b->rewards[i] - out->reward_mean) * (b->rewards[i] - out->reward_mean);
  out->reward_std = sqrt(sq / rows);

  double t0 = drl_seconds();
  /* Sample level: advantages on the full groups (PODS re-normalises on its subset). */
  drl_d3s_schedule sched = {d->n_init, d->n_final, d->k_init, d->k_final, d->schedule};
  int n_keep = b->G;
  double K = 1.0;
  if (d->sampling != DRL_CFG_SAMPLING_NONE) DRL_TRY(drl_d3s_schedule_at(&sched, iteration, total, &n_keep, &K));
  {
    DRL_RANGE("advantages");
    if (d->sampling == DRL_CFG_SAMPLING_PODS) {
      DRL_TRY(drl_pods_select(b->rewards, b->n_groups, b->G, n_keep, g->dr_grpo, (float)g->adv_eps, s->keep, s->adv));
    } else {
      DRL_TRY(drl_grpo_advantages(b->rewards, b->n_groups, b->G, g->dr_grpo, (float)g->adv_eps, s->adv));
      if (d->sampling == DRL_CFG_SAMPLING_D3S)
        DRL_TRY(drl_d3s_select_samples(s->adv, b->n_groups, b->G, n_keep, (drl_d3s_scope)d->sample_scope, s->keep));
      else
        memset(s->keep, 1, (size_t)rows);
    }
  }
  /* Compact the kept rows; targets are the next tokens of the response positions. */
  int k = 0;
  int64_t resp_tokens = 0;
  for (int i = 0; i < rows; ++i) {
    for (int t = 0; t < T; ++t) resp_tokens += b->mask[(size_t)i * T + t] != 0;
    if (!s->keep[i]) continue;
    s->rows_idx[k] = i;
    s->row_adv[k] = s->adv[i];
    s->row_start[k] = b->row_start[i];
    for (int t = 0; t < T; ++t) {
      size_t src = (size_t)i * T + t, dst = (size_t)k * T + t;
      s->tokens[dst] = b->tokens[src];
      s->valid[dst] = b->mask[src] && t + 1 < T;
      s->targets[dst] = s->valid[dst] ? b->tokens[src + 1] : -1;
    }
    ++k;
  }
  out->response_tokens = resp_tokens;
  out->response_len = (double)resp_tokens / rows;
  out->kept_samples = k;
  int mbs = g->minibatches < k ? g->minibatches : (k > 0 ? k : 1);
  float temperature = (float)g->temperature;

  double t1 = drl_seconds();
  /* Old-policy pass (and the frozen reference), chunked exactly as the updates will be. */
  {
    DRL_RANGE("old_policy");
    for (int mb = 0; mb < mbs; ++mb)
      DRL_TRY(forward_rows(m, s, mb * k / mbs, (mb + 1) * k / mbs, T, temperature, s->old_lp, s->entropy));
    if (s->ref_params) {
      float *own = m->params;
      m->params = s->ref_params;
      drl_status st = DRL_OK;
      for (int mb = 0; st == DRL_OK && mb < mbs; ++mb)
        st = forward_rows(m, s, mb * k / mbs, (mb + 1) * k / mbs, T, temperature, s->ref_lp, NULL);
      m->params = own;
      DRL_TRY(st);
    }
  }
  double t2 = drl_seconds();
  /* Token level. */
  {
    DRL_RANGE("downsample");
    if (d->sampling == DRL_CFG_SAMPLING_D3S && d->token_level)
      DRL_TRY(drl_d3s_select_tokens(s->row_adv, s->entropy, s->valid, NULL, k, T, K,
                                    (drl_d3s_token_scope)d->token_scope, s->token_mask, NULL));
    else
      memcpy(s->token_mask, s->valid, (size_t)k * T);
  }
  double t3 = drl_seconds();
  drl_d3s_stats ds;
  drl_d3s_measure(s->row_adv, NULL, s->valid, s->token_mask, k, T, &ds);
  out->kept_tokens = ds.kept_tokens;
  out->candidate_tokens = ds.candidate_tokens;
  out->usefulness = ds.usefulness;
  double ent = 0;
  for (int64_t n = 0; n < (int64_t)k * T; ++n) ent += s->valid[n] ? s->entropy[n] : 0.0;
  out->entropy = ds.candidate_tokens ? ent / ds.candidate_tokens : 0.0;

  /* Updates. The aggregation's denominator is the whole batch's, so minibatch losses add up to the batch loss. */
  drl_grpo_loss_cfg lc = {(float)g->clip_low, (float)g->clip_high, (float)g->dual_clip, (float)g->kl_beta,
                          (drl_loss_agg)g->loss_agg, g->max_new_tokens};
  double denom = drl_grpo_loss_denom(lc.agg, k, T, s->token_mask);
  float lr = (float)(g->lr > 0 ? g->lr : cfg->optim.lr);
  out->lr = lr;
  drl_grpo_stats total_stats;
  memset(&total_stats, 0, sizeof total_stats);
  /* No kept token with a non-zero advantage (and no KL term): the gradient is zero. Skip the optimizer step: with
   * zero gradients AdamW's momentum would still move the weights. */
  int signal = g->kl_beta > 0.0;
  for (int i = 0; i < k && !signal; ++i)
    if (s->row_adv[i] != 0.0f)
      for (int t = 0; t < T && !signal; ++t) signal = s->token_mask[(size_t)i * T + t] != 0;
  out->skipped = !signal;
  for (int epoch = 0; epoch < g->ppo_epochs && k > 0 && signal; ++epoch) {
    for (int mb = 0; mb < mbs; ++mb) {
      DRL_RANGE("update");
      int lo = mb * k / mbs, hi = (mb + 1) * k / mbs;
      DRL_TRY(drl_transformer_zero_grads(m));
      for (int c = lo; c < hi; c += m->B_max) {
        int B = hi - c < m->B_max ? hi - c : m->B_max;
        size_t off = (size_t)c * T;
        DRL_TRY(forward_rows(m, s, c, c + B, T, temperature, s->lp, NULL));
        drl_grpo_stats st;
        DRL_TRY(drl_grpo_loss(&lc, B, T, s->lp + off, s->old_lp + off, s->ref_params ? s->ref_lp + off : NULL,
                              s->row_adv + c, s->token_mask + off, denom, s->dlogprob + off, &st));
        drl_grpo_stats_merge(&total_stats, &st);
        DRL_TRY(drl_transformer_backward(m, s->dlogprob + off));
      }
      drl_optim_step hp = {lr,
                           (float)cfg->optim.beta1,
                           (float)cfg->optim.beta2,
                           (float)cfg->optim.eps,
                           (float)cfg->optim.weight_decay,
                           (float)cfg->optim.grad_clip,
                           (int)(*optim_step + 1)};
      float norm = 0.0f;
      DRL_TRY(drl_transformer_step(m, &hp, &norm));
      ++*optim_step;
      out->grad_norm = norm;
    }
  }
  DRL_TRY(drl_device_sync(&m->dev));
  out->seconds_select = (t1 - t0) + (t3 - t2);
  out->seconds_old_policy = t2 - t1;
  out->seconds_update = drl_seconds() - t3;
  out->loss = total_stats.loss / (g->ppo_epochs > 0 ? g->ppo_epochs : 1);
  out->kl = total_stats.kl / (g->ppo_epochs > 0 ? g->ppo_epochs : 1);
  out->clip_frac = total_stats.clip_frac;
  return DRL_OK;
}
