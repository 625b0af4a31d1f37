/* Configuration: every rule a config must satisfy. Each key's own type and range (from the table), the rules
 * between keys, and the rules between keys and the job that runs them (its rank count, the API). Rules that need
 * the data (model.max_seq against the longest example, model.vocab_size against the dataset's vocabulary) stay
 * with the code that loads the data. */
#include <stdio.h>
#include <string.h>

#include "data/text_reward.h"
#include "engine/config_internal.h"
#include "engine/flow_policy.h"
#include "samplers/sde_tree.h"

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
  if (m->ffn == DRL_CFG_FFN_MOE && e->first_layer >= m->n_layers)
    return DRL_FAIL(DRL_ERR_CONFIG, "moe.first_layer (%d) leaves no MoE block among model.n_layers = %d",
                    e->first_layer, m->n_layers);
  /* verl's gspo aggregates seq-mean-token-mean whatever loss_agg_mode says; dynrl says so instead of ignoring a key. */
  if (cfg->grpo.loss == DRL_CFG_LOSS_GSPO && cfg->grpo.loss_agg != DRL_CFG_AGG_SEQ_MEAN_TOKEN_MEAN)
    return DRL_FAIL(DRL_ERR_CONFIG, "grpo.loss = gspo averages each sequence's tokens, then the sequences (as verl's "
                    "gspo): set grpo.loss_agg=seq_mean_token_mean");
  drl_text_reward_spec spec;
  if (drl_text_reward_parse(cfg->grpo.text_reward, &spec) != DRL_OK)
    return drl_fail_context(DRL_ERR_CONFIG, "grpo.text_reward");
  return DRL_OK;
}

static bool has_flow_phase(const drl_config *cfg) {
  for (int p = 0; p < cfg->trainer.phases.count; ++p)
    if (drl_flow_policy_phase(cfg->trainer.phases.items[p])) return true;
  return false;
}

/* The flow policy's job: flow phases only, one process, AdamW, and a sampler the tree parameters allow. */
static drl_status check_flow_job(const drl_config *cfg, int ranks) {
  const drl_config_tree *t = &cfg->tree;
  for (int p = 0; p < cfg->trainer.phases.count; ++p)
    if (!drl_flow_policy_phase(cfg->trainer.phases.items[p]))
      return DRL_FAIL(DRL_ERR_CONFIG, "trainer.phases mixes flow phases with '%s': the flow policy runs only "
                      "flow_pretrain and flow_grpo", drl_cfg_phase_name(cfg->trainer.phases.items[p]));
  if (ranks > 1) return DRL_FAIL(DRL_ERR_CONFIG, "the flow phases run on one process; this job has %d ranks", ranks);
  if (cfg->optim.name != DRL_CFG_OPTIM_ADAMW) return DRL_FAIL(DRL_ERR_CONFIG, "the flow phases need optim.name: adamw");
  if (cfg->flow.time_features % 2 != 0)
    return DRL_FAIL(DRL_ERR_CONFIG, "flow.time_features (%d) must be even (sin and cos pairs)",
                    cfg->flow.time_features);
  if (t->window_start + t->depth > t->steps)
    return DRL_FAIL(DRL_ERR_CONFIG, "tree.window_start (%d) + tree.depth (%d) must be at most tree.steps (%d)",
                    t->window_start, t->depth, t->steps);
  drl_sde_tree_params p = drl_flow_policy_tree_params(cfg, 1);
  DRL_TRY(drl_sde_tree_params_check(&p));
  if (drl_sde_tree_rows_needed(&p, t->conditions_per_iter) > (1 << 24))
    return DRL_FAIL(DRL_ERR_CONFIG, "tree.conditions_per_iter x leaves per condition = %lld points per call: too many",
                    (long long)drl_sde_tree_rows_needed(&p, t->conditions_per_iter));
  return DRL_OK;
}

/* The token policy's job: every data-parallel shard gets whole rows of the phases it runs. SPSA gives every
 * contribution a whole batch of its own (one shard); AdamW splits each batch into dist.shards, or one per rank. */
static drl_status check_token_job(const drl_config *cfg, int ranks) {
  int shards = cfg->optim.name == DRL_CFG_OPTIM_SPSA ? 1 : cfg->dist.shards > 0 ? cfg->dist.shards : ranks;
  for (int p = 0; p < cfg->trainer.phases.count; ++p) {
    drl_cfg_phase ph = cfg->trainer.phases.items[p];
    if (ph == DRL_CFG_PHASE_SFT && cfg->sft.batch_size % shards != 0)
      return DRL_FAIL(DRL_ERR_CONFIG, "sft.batch_size (%d) must be a multiple of the %d data-parallel shards",
                      cfg->sft.batch_size, shards);
    if (ph == DRL_CFG_PHASE_GRPO && cfg->grpo.prompts_per_step % shards != 0)
      return DRL_FAIL(DRL_ERR_CONFIG, "grpo.prompts_per_step (%d) must be a multiple of the %d data-parallel shards",
                      cfg->grpo.prompts_per_step, shards);
  }
  return DRL_OK;
}

drl_status drl_config_check_job(const drl_config *cfg, int ranks) {
  if (!cfg || ranks < 1)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_check_job: cfg is NULL or ranks (%d) is not positive", ranks);
  return has_flow_phase(cfg) ? check_flow_job(cfg, ranks) : check_token_job(cfg, ranks);
}

drl_status drl_config_check_api(const drl_config *cfg) {
  if (!cfg) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_check_api: cfg is NULL");
  if (cfg->optim.name != DRL_CFG_OPTIM_ADAMW)
    return DRL_FAIL(DRL_ERR_UNSUPPORTED, "the engine API trains with optim.name: adamw; spsa runs through dynrl train");
  for (int p = 0; p < cfg->trainer.phases.count; ++p)
    if (drl_flow_policy_phase(cfg->trainer.phases.items[p]))
      return DRL_FAIL(DRL_ERR_UNSUPPORTED, "the engine API drives the token policy; the flow phases (%s) run through "
                      "dynrl train", drl_cfg_phase_name(cfg->trainer.phases.items[p]));
  return DRL_OK;
}
