/* The public C API (include/dynrl.h): a drl_run with a sampler and the GRPO state, for host trainers. */
#include <dynrl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/vocab.h"
#include "engine/config.h"
#include "engine/rl_step.h"
#include "engine/run.h"
#include "kernels/status.h"
#include "samplers/rollout.h"

struct drl_engine {
  drl_config cfg;
  drl_run run;
  drl_rollout sampler;
  drl_rl_state rl;
  drl_rollout_batch batch;
  int rows_max;
  int32_t *prompts;  /* the prompts of the last generate, for scoring */
  int64_t *offsets;
  int64_t prompts_cap;
  float *rewards;
  drl_reward_fn reward_fn;
  void *reward_user;
  int64_t iteration;
  int has_batch;
  drl_stats stats;
  char last_ckpt[4200]; /* "path (grpo step N)" of the last save or load; "" before */
};

static drl_status need(const void *p, const char *what) {
  return p ? DRL_OK : DRL_FAIL(DRL_ERR_INVALID_ARG, "%s is NULL", what);
}

drl_status drl_engine_create(const char *config_path, const char *const *overrides, int n_overrides,
                             drl_engine **out) {
  DRL_TRY(need(out, "engine"));
  *out = NULL;
  drl_engine *e = (drl_engine *)calloc(1, sizeof *e);
  if (!e) return DRL_FAIL(DRL_ERR_OOM, "out of memory for an engine");
  drl_status st = config_path ? drl_config_load_file(&e->cfg, config_path) : drl_config_load_default(&e->cfg);
  for (int i = 0; st == DRL_OK && i < n_overrides; ++i) st = drl_config_set(&e->cfg, overrides[i]);
  if (st == DRL_OK) st = drl_config_check_api(&e->cfg);
  const drl_config_grpo *g = &e->cfg.grpo;
  e->rows_max = g->prompts_per_step * g->group_size;
  int chunk = e->rows_max < 64 ? e->rows_max : 64;
  if (st == DRL_OK) st = drl_run_open(&e->run, &e->cfg, NULL, chunk);
  if (st == DRL_OK) st = drl_rollout_create(&e->sampler, &e->run.model, e->rows_max, e->cfg.model.max_seq);
  if (st == DRL_OK) st = drl_rl_state_create(&e->rl, &e->cfg, &e->run.model, 1, e->rows_max, e->cfg.model.max_seq);
  if (st == DRL_OK) {
    e->rewards = (float *)malloc((size_t)e->rows_max * sizeof(float));
    e->offsets = (int64_t *)malloc((size_t)(g->prompts_per_step + 1) * sizeof(int64_t));
    if (!e->rewards || !e->offsets) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for an engine's buffers");
  }
  if (st != DRL_OK) {
    drl_engine_destroy(e);
    return st;
  }
  *out = e;
  return DRL_OK;
}

void drl_engine_destroy(drl_engine *e) {
  if (!e) return;
  drl_rollout_batch_free(&e->batch);
  drl_rl_state_free(&e->rl, &e->run.model);
  drl_rollout_free(&e->sampler);
  drl_run_close(&e->run);
  free(e->prompts);
  free(e->offsets);
  free(e->rewards);
  free(e);
}

const char *drl_engine_vocab(const drl_engine *e) { return e ? e->run.data.vocab : ""; }

drl_status drl_engine_encode(const drl_engine *e, const char *text, int32_t *ids, int64_t cap, int64_t *n) {
  DRL_TRY(need(e, "engine"));
  return drl_vocab_encode(e->run.data.vocab, text, ids, cap, n);
}

drl_status drl_engine_generate(drl_engine *e, const int32_t *tokens, const int64_t *offsets, int n_prompts,
                               drl_rollouts *out) {
  DRL_TRY(need(e, "engine"));
  DRL_TRY(need(tokens, "prompt tokens"));
  DRL_TRY(need(offsets, "prompt offsets"));
  DRL_TRY(need(out, "rollouts"));
  const drl_config_grpo *g = &e->cfg.grpo;
  if (n_prompts < 1 || n_prompts > g->prompts_per_step)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "generate: %d prompts; the engine takes 1..grpo.prompts_per_step = %d",
                    n_prompts, g->prompts_per_step);
  int64_t total = offsets[n_prompts] - offsets[0];
  if (offsets[0] != 0 || total < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "generate: offsets must start at 0");
  if (total > e->prompts_cap) {
    int32_t *p = (int32_t *)realloc(e->prompts, (size_t)total * sizeof(int32_t));
    if (!p) return DRL_FAIL(DRL_ERR_OOM, "generate: out of memory for %lld prompt tokens", (long long)total);
    e->prompts = p;
    e->prompts_cap = total;
  }
  memcpy(e->prompts, tokens, (size_t)total * sizeof(int32_t));
  memcpy(e->offsets, offsets, (size_t)(n_prompts + 1) * sizeof(int64_t));
  drl_rollout_params rp = {g->group_size, g->max_new_tokens, (float)g->temperature, g->top_k, (float)g->top_p,
                           drl_vocab_eos(e->run.data.vocab), e->cfg.run.seed, (uint32_t)(e->iteration + 1), 0, 0};
  e->has_batch = 0;
  DRL_TRY(drl_rollout_generate(&e->sampler, &e->run.model, e->prompts, e->offsets, n_prompts, &rp, &e->batch));
  e->has_batch = 1;
  const drl_rollout_batch *b = &e->batch;
  drl_rollouts r = {b->n_prompts, b->G, b->rows, b->P, b->T, b->tokens, b->row_start, b->response_len,
                    b->logprob, b->entropy, b->mask};
  *out = r;
  return DRL_OK;
}

drl_status drl_engine_train(drl_engine *e, const float *rewards, drl_stats *stats) {
  DRL_TRY(need(e, "engine"));
  DRL_TRY(need(rewards, "rewards"));
  if (!e->has_batch) return DRL_FAIL(DRL_ERR_INVALID_ARG, "train: no rollouts (call drl_engine_generate first)");
  const drl_rollout_batch *b = &e->batch;
  drl_rl_batch rb = {b->n_prompts, b->G, b->T, b->tokens, b->row_start, b->mask, rewards};
  drl_rl_stats s;
  e->rl.fault_step = e->iteration + 1;
  DRL_TRY(drl_rl_step(&e->rl, &e->run.model, &e->cfg, &rb, NULL, &e->run.balance, (int)e->iteration + 1,
                      e->cfg.grpo.steps, &e->run.optim_step, &s));
  e->iteration++;
  e->has_batch = 0;
  drl_status st = drl_bad_steps_record(&e->run.bad, "grpo", e->iteration, s.bad, e->cfg.trainer.max_bad_steps,
                                       e->last_ckpt);
  drl_stats out = {e->iteration, e->run.optim_step, s.reward_mean, s.reward_std, s.loss, s.grad_norm,
                   s.clip_frac, s.kl, s.entropy, s.usefulness, s.kept_samples, s.kept_tokens, b->generated_tokens,
                   s.bad[0] != 0, e->run.bad.total};
  e->stats = out;
  if (stats) *stats = out;
  return st;
}

drl_status drl_engine_set_reward(drl_engine *e, drl_reward_fn fn, void *user) {
  DRL_TRY(need(e, "engine"));
  e->reward_fn = fn;
  e->reward_user = user;
  return DRL_OK;
}

drl_status drl_engine_iterate(drl_engine *e, drl_stats *stats) {
  DRL_TRY(need(e, "engine"));
  int n = e->cfg.grpo.prompts_per_step;
  int64_t longest = e->run.max_prompt;
  int32_t *tokens = (int32_t *)malloc((size_t)(n * longest + 1) * sizeof(int32_t));
  int64_t *offsets = (int64_t *)malloc((size_t)(n + 1) * sizeof(int64_t));
  drl_status st = tokens && offsets ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "iterate: out of memory");
  drl_rollouts r;
  if (st == DRL_OK) {
    drl_run_draw_prompts(&e->run, (uint32_t)(e->iteration + 1), 0, n, tokens, offsets);
    st = drl_engine_generate(e, tokens, offsets, n, &r);
  }
  if (st == DRL_OK && e->reward_fn) {
    for (int row = 0; row < r.rows; ++row) {
      int i = row / r.group_size;
      e->rewards[row] = e->reward_fn(e->prompts + e->offsets[i], (int)(e->offsets[i + 1] - e->offsets[i]),
                                     r.tokens + (size_t)row * r.length + r.prompt_len, r.response_len[row],
                                     e->reward_user);
    }
  } else if (st == DRL_OK) {
    st = drl_run_score(&e->run, &e->batch, e->prompts, e->offsets, e->rewards);
  }
  if (st == DRL_OK) st = drl_engine_train(e, e->rewards, stats);
  free(tokens);
  free(offsets);
  return st;
}

drl_status drl_engine_evaluate(drl_engine *e, double *accuracy) {
  DRL_TRY(need(e, "engine"));
  DRL_TRY(need(accuracy, "accuracy"));
  return drl_run_evaluate(&e->run, accuracy);
}

drl_status drl_engine_save(drl_engine *e, const char *path) {
  DRL_TRY(need(e, "engine"));
  DRL_TRY(need(path, "path"));
  DRL_TRY(drl_run_save(&e->run, path, "grpo", (int)e->iteration));
  snprintf(e->last_ckpt, sizeof e->last_ckpt, "%s (grpo step %lld)", path, (long long)e->iteration);
  return DRL_OK;
}

drl_status drl_engine_load(drl_engine *e, const char *path) {
  DRL_TRY(need(e, "engine"));
  DRL_TRY(need(path, "path"));
  char phase[64];
  int step = 0;
  DRL_TRY(drl_run_resume(&e->run, path, phase, sizeof phase, &step));
  e->iteration = strcmp(phase, "grpo") == 0 ? step : 0;
  e->has_batch = 0;
  snprintf(e->last_ckpt, sizeof e->last_ckpt, "%s (%s step %d)", path, phase, step);
  return DRL_OK;
}

drl_status drl_engine_stats(const drl_engine *e, drl_stats *stats) {
  DRL_TRY(need(e, "engine"));
  DRL_TRY(need(stats, "stats"));
  *stats = e->stats;
  return DRL_OK;
}
