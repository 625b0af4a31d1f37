/* Configuration: every rule a config must satisfy. Each key's own type and range (from the table) and the rules
 * between keys. */
#include <stdio.h>
#include <string.h>

#include "engine/config_internal.h"

drl_status drl_config_validate(const drl_config *cfg) {
  if (!cfg) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_validate: cfg is NULL");
  char why[1024];
  for (size_t i = 0; i < CFG_N_KEYS; ++i) {
    const cfg_key *k = &cfg_keys[i];
    cfg_value v;
    if (!cfg_read_member(cfg, k, &v, why, sizeof why) || !cfg_check_value(k, &v, why, sizeof why))
      return DRL_FAIL(DRL_ERR_CONFIG, "%s.%s: %s", cfg_sections[k->section].name, k->name, why);
  }
  /* Rules between keys. */
  const drl_config_model *m = &cfg->model;
  if (m->d_model % m->n_heads != 0)
    return DRL_FAIL(DRL_ERR_CONFIG, "model.d_model (%d) must be a multiple of model.n_heads (%d)", m->d_model,
                    m->n_heads);
  if ((m->d_model / m->n_heads) % 2 != 0)
    return DRL_FAIL(DRL_ERR_CONFIG,
                    "the head size model.d_model / model.n_heads = %d / %d = %d must be even (RoPE rotates pairs)",
                    m->d_model, m->n_heads, m->d_model / m->n_heads);
  if (m->n_heads % m->n_kv_heads != 0)
    return DRL_FAIL(DRL_ERR_CONFIG, "model.n_heads (%d) must be a multiple of model.n_kv_heads (%d)", m->n_heads,
                    m->n_kv_heads);
  const drl_config_moe *e = &cfg->moe;
  if (m->ffn == DRL_CFG_FFN_MOE && e->top_k > e->experts)
    return DRL_FAIL(DRL_ERR_CONFIG, "moe.top_k (%d) must not exceed moe.experts (%d)", e->top_k, e->experts);
  if (m->ffn == DRL_CFG_FFN_MOE && e->d_expert == 0 && m->d_ff < e->top_k)
    return DRL_FAIL(DRL_ERR_CONFIG, "moe.d_expert = 0 means model.d_ff / moe.top_k, which is 0 for d_ff %d, top_k %d",
                    m->d_ff, e->top_k);
  const drl_config_d3s *d = &cfg->d3s;
  if (d->sampling != DRL_CFG_SAMPLING_NONE && (d->n_init > cfg->grpo.group_size || d->n_final > cfg->grpo.group_size))
    return DRL_FAIL(DRL_ERR_CONFIG, "d3s.n_init (%d) and d3s.n_final (%d) must not exceed grpo.group_size (%d)",
                    d->n_init, d->n_final, cfg->grpo.group_size);
  return DRL_OK;
}
