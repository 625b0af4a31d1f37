#include "moe_balance.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/nvtx.h"
#include "models/moe.h"

int drl_moe_balance_active(const drl_moe_balance *b) { return b && b->L > 0; }

drl_status drl_moe_balance_init(drl_moe_balance *b, const drl_config *cfg, const drl_transformer *m, drl_dp *dp) {
  memset(b, 0, sizeof *b);
  b->cfg = cfg;
  b->dp = dp;
  if (m->cfg.moe.experts == 0) return DRL_OK;
  b->L = m->cfg.n_layers;
  b->E = m->cfg.moe.experts;
  b->K = m->cfg.moe.top_k;
  size_t n = (size_t)b->L * b->E;
  b->bias = (float *)calloc(n, sizeof(float));
  b->counts = (double *)calloc(n + 2, sizeof(double)); /* + the step's auxiliary loss and forwards, summed alike */
  b->fwd_counts = (double *)calloc(n, sizeof(double));
  b->fwd_scores = (double *)calloc(n, sizeof(double));
  b->aux = (float *)calloc(n, sizeof(float));
  b->load = (double *)calloc(n, sizeof(double));
  if (!b->bias || !b->counts || !b->fwd_counts || !b->fwd_scores || !b->aux || !b->load) {
    drl_moe_balance_free(b);
    return DRL_FAIL(DRL_ERR_OOM, "out of memory for MoE balancing state");
  }
  return DRL_OK;
}

void drl_moe_balance_free(drl_moe_balance *b) {
  if (!b) return;
  free(b->bias);
  free(b->counts);
  free(b->fwd_counts);
  free(b->fwd_scores);
  free(b->aux);
  free(b->load);
  memset(b, 0, sizeof *b);
}

/* Whether block l is an MoE block. */
static int moe_block(const drl_moe_balance *b, int l) { return l >= b->cfg->moe.first_layer; }

drl_status drl_moe_balance_forward(drl_moe_balance *b, drl_transformer *m, const uint8_t *real) {
  if (!drl_moe_balance_active(b)) return DRL_OK;
  DRL_RANGE("moe_balance");
  size_t n = (size_t)b->L * b->E;
  int aux_loss = b->cfg->moe.balance == DRL_CFG_BALANCE_AUX_LOSS;
  memset(b->fwd_counts, 0, n * sizeof(double));
  memset(b->fwd_scores, 0, n * sizeof(double));
  DRL_TRY(drl_transformer_moe_routes(m, real, b->fwd_counts, aux_loss ? b->fwd_scores : NULL));
  for (size_t i = 0; i < n; ++i) b->counts[i] += b->fwd_counts[i];
  b->forwards++;
  if (!aux_loss) return DRL_OK;
  /* alpha E sum_i f_i P_i with f_i = c_i / (K T) and P_i = (1/T) sum_t s_hat[t,i]: each token's dL/ds_hat[t,i] is
   * alpha E f_i / T (the counts are constants, as in Switch and Megatron). */
  /* Each forward's loss counts 1/shards: the loss is the mean over a global batch's shards (one process, any ranks). */
  double alpha = b->cfg->moe.aux_alpha / drl_dp_shards(b->dp), loss = 0.0;
  for (int l = 0; l < b->L; ++l) {
    double T = 0.0;
    for (int e = 0; e < b->E; ++e) T += b->fwd_counts[(size_t)l * b->E + e];
    T /= b->K;
    for (int e = 0; e < b->E; ++e) {
      size_t i = (size_t)l * b->E + e;
      double f = T > 0 ? b->fwd_counts[i] / (b->K * T) : 0.0;
      b->aux[i] = T > 0 ? (float)(alpha * b->E * f / T) : 0.0f;
      loss += T > 0 ? alpha * b->E * f * (b->fwd_scores[i] / T) : 0.0;
    }
  }
  b->aux_loss += loss; /* one term per forward, so the sum over the job's shards has one association */
  return drl_transformer_moe_set_aux(m, b->aux, real);
}

double drl_moe_balance_maxvio(const drl_moe_balance *b, const double *counts, double *per_block) {
  double sum = 0.0;
  int blocks = 0;
  for (int l = 0; l < b->L; ++l) {
    double v = moe_block(b, l) ? drl_moe_maxvio(counts + (size_t)l * b->E, b->E) : 0.0;
    if (per_block) per_block[l] = v;
    if (moe_block(b, l)) {
      sum += v;
      blocks++;
    }
  }
  return blocks ? sum / blocks : 0.0;
}

drl_status drl_moe_balance_step(drl_moe_balance *b, drl_transformer *m, int64_t step, int rl) {
  if (!drl_moe_balance_active(b)) return DRL_OK;
  DRL_RANGE("moe_balance");
  size_t n = (size_t)b->L * b->E;
  /* The global batch: integer counts, so any summation order gives the same bits; the auxiliary loss is summed in
   * rank order, which is shard order. */
  b->counts[n] = b->aux_loss;
  b->counts[n + 1] = b->forwards;
  if (b->dp && b->dp->comm && b->dp->comm->size > 1)
    DRL_TRY(drl_comm_sum_f64(b->dp->comm, b->counts, b->counts, (int)n + 2));
  b->aux_loss = b->counts[n];
  b->forwards = (int)b->counts[n + 1];
  b->maxvio_batch = drl_moe_balance_maxvio(b, b->counts, NULL);
  for (int l = 0; l < b->L; ++l) {
    double total = 0.0;
    for (int e = 0; e < b->E; ++e) total += b->counts[(size_t)l * b->E + e];
    for (int e = 0; e < b->E; ++e)
      b->load[(size_t)l * b->E + e] = total > 0 ? b->counts[(size_t)l * b->E + e] / total : 0.0;
  }
  b->last_aux_loss = b->forwards ? b->aux_loss / b->forwards : 0.0;
  b->fresh = 1;
  const drl_config_moe *c = &b->cfg->moe;
  double rate = rl ? c->rl_bias_rate : c->bias_rate;
  if (c->bias_decay > 0) rate *= (double)c->bias_decay / (double)(c->bias_decay + step);
  float u = (float)rate;
  int frozen = c->freeze_after > 0 && step > c->freeze_after;
  if (c->balance == DRL_CFG_BALANCE_AUX_FREE && u > 0.0f && !frozen) {
    for (int l = 0; l < b->L; ++l)
      if (moe_block(b, l))
        drl_moe_bias_update(b->bias + (size_t)l * b->E, b->counts + (size_t)l * b->E, b->E, u,
                            c->bias_rule == DRL_CFG_BIAS_SIGN ? DRL_MOE_BIAS_SIGN : DRL_MOE_BIAS_PROPORTIONAL,
                            c->bias_center);
    DRL_TRY(drl_transformer_moe_set_bias(m, b->bias));
  }
  memset(b->counts, 0, n * sizeof(double));
  b->aux_loss = 0.0;
  b->forwards = 0;
  return DRL_OK;
}

void drl_moe_balance_discard(drl_moe_balance *b) {
  if (!drl_moe_balance_active(b)) return;
  memset(b->counts, 0, (size_t)b->L * b->E * sizeof(double));
  b->aux_loss = 0.0;
  b->forwards = 0;
}

drl_status drl_moe_balance_set_bias(drl_moe_balance *b, drl_transformer *m, const float *bias) {
  if (!drl_moe_balance_active(b)) return DRL_OK;
  memcpy(b->bias, bias, (size_t)b->L * b->E * sizeof(float));
  return drl_transformer_moe_set_bias(m, b->bias);
}
