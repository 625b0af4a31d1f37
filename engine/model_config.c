#include "model_config.h"

#include <string.h>

void drl_model_config(const drl_config *cfg, int vocab, drl_transformer_config *tc) {
  const drl_config_model *mc = &cfg->model;
  memset(tc, 0, sizeof *tc);
  tc->vocab = vocab;
  tc->d_model = mc->d_model;
  tc->n_layers = mc->n_layers;
  tc->n_heads = mc->n_heads;
  tc->n_kv_heads = mc->n_kv_heads;
  tc->d_ff = mc->d_ff;
  tc->max_seq = mc->max_seq;
  tc->tied_embeddings = mc->tied_embeddings;
  tc->rope_theta = (float)mc->rope_theta;
  tc->init_std = (float)mc->init_std;
  tc->norm_eps = (float)mc->norm_eps;
  if (mc->ffn == DRL_CFG_FFN_MOE) {
    const drl_config_moe *e = &cfg->moe;
    drl_moe_config moe = {e->experts,       e->top_k,         e->d_expert ? e->d_expert : mc->d_ff / e->top_k,
                          e->shared_d_ff,   e->first_layer,   e->normalize,
                          (float)e->route_scale};
    tc->moe = moe;
  }
}
