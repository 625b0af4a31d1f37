#include "grpo_iterate.h"

#include <stdlib.h>
#include <string.h>

#include "engine/log.h"
#include "kernels/nvtx.h"

drl_status drl_grpo_iterate_create(drl_grpo_iteration *g, drl_run *r, int shards, int first_shard, int n,
                                   int64_t prompt_cap, int T) {
  memset(g, 0, sizeof *g);
  g->shards = shards > 0 ? shards : drl_dp_local(&r->dp);
  g->first_shard = shards > 0 ? first_shard : drl_dp_first(&r->dp);
  g->n = n;
  g->G = r->cfg->grpo.group_size;
  g->T = T;
  g->prompt_cap = prompt_cap;
  size_t k = (size_t)g->shards, rows = (size_t)n * (size_t)g->G;
  g->prompts = (int32_t *)malloc(k * (size_t)(prompt_cap ? prompt_cap : 1) * sizeof(int32_t));
  g->offsets = (int64_t *)malloc(k * (size_t)(n + 1) * sizeof(int64_t));
  g->examples = (int64_t *)malloc(k * (size_t)(n > 0 ? n : 1) * sizeof(int64_t));
  g->rewards = (float *)malloc(k * rows * sizeof(float));
  g->rollouts = (drl_rollout_batch *)calloc(k, sizeof *g->rollouts);
  g->batch = (drl_grpo_update_batch *)calloc(k, sizeof *g->batch);
  drl_status st = g->prompts && g->offsets && g->examples && g->rewards && g->rollouts && g->batch
                      ? DRL_OK
                      : DRL_FAIL(DRL_ERR_OOM, "out of memory for GRPO buffers");
  const int new_max = r->cfg->grpo.max_new_tokens;
  if (st == DRL_OK) st = drl_rollout_create(&g->sampler, &r->model, (int)rows, g->G, T - new_max, new_max);
  if (st == DRL_OK)
    drl_log(DRL_LOG_INFO,
            "rollout memory: KV cache %.1f MB (%d prompts x %d positions, %d rows x %d) and decode workspace %.1f MB",
            (double)g->sampler.cache.kv_bytes / 1e6, g->sampler.cache.n_groups, T - new_max, (int)rows, new_max,
            (double)(g->sampler.cache.device_bytes - g->sampler.cache.kv_bytes) / 1e6);
  if (st == DRL_OK) st = drl_grpo_update_state_create(&g->rl, r->cfg, &r->model, g->shards, (int)rows, T);
  if (st != DRL_OK) drl_grpo_iterate_free(g, r);
  return st;
}

void drl_grpo_iterate_free(drl_grpo_iteration *g, drl_run *r) {
  for (int j = 0; g->rollouts && j < g->shards; ++j) drl_rollout_batch_free(&g->rollouts[j]);
  free(g->rollouts);
  free(g->batch);
  free(g->prompts);
  free(g->offsets);
  free(g->examples);
  free(g->rewards);
  drl_grpo_update_state_free(&g->rl, &r->model);
  drl_rollout_free(&g->sampler);
  memset(g, 0, sizeof *g);
}

static int32_t *shard_prompts(const drl_grpo_iteration *g, int j) { return g->prompts + (size_t)j * g->prompt_cap; }
static int64_t *shard_offsets(const drl_grpo_iteration *g, int j) { return g->offsets + (size_t)j * (g->n + 1); }
static float *shard_rewards(const drl_grpo_iteration *g, int j) { return g->rewards + (size_t)j * g->n * g->G; }
static int64_t *shard_examples(const drl_grpo_iteration *g, int j) { return g->examples + (size_t)j * g->n; }

drl_status drl_grpo_iterate_roll_out(drl_grpo_iteration *g, drl_run *r, int64_t step, int j, const int32_t *tokens,
                                     const int64_t *offsets, int n) {
  DRL_RANGE("rollout");
  const drl_config_grpo *c = &r->cfg->grpo;
  if (n < 1 || n > g->n) return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: %d prompts for room of 1..%d", n, g->n);
  if (offsets[0] != 0 || offsets[n] < 0 || offsets[n] > g->prompt_cap)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: prompt offsets must start at 0 and hold at most %lld tokens",
                    (long long)g->prompt_cap);
  /* The rollouts and the scores read the prompts after the caller's arrays may be gone. */
  if (tokens != shard_prompts(g, j)) memcpy(shard_prompts(g, j), tokens, (size_t)offsets[n] * sizeof(int32_t));
  if (offsets != shard_offsets(g, j)) {
    memcpy(shard_offsets(g, j), offsets, (size_t)(n + 1) * sizeof(int64_t));
    for (int i = 0; i < n; ++i) shard_examples(g, j)[i] = -1; /* a caller's prompts, not the training set's */
  }
  uint64_t first_rollout = (uint64_t)(g->first_shard + j) * (uint64_t)g->n * (uint64_t)g->G;
  drl_rollout_params rp = {g->G,         c->max_new_tokens, (float)c->temperature, c->top_k,
                           (float)c->top_p, r->eos,           r->cfg->run.seed,     (uint32_t)step,
                           0,            first_rollout,     r->stop_ids,          r->n_stop,
                           NULL,         NULL};
  drl_rollout_batch *b = &g->rollouts[j];
  DRL_TRY(drl_rollout_generate(&g->sampler, &r->model, shard_prompts(g, j), shard_offsets(g, j), n, &rp, b));
  drl_grpo_update_batch v = {n, g->G, b->T, b->tokens, b->row_start, b->mask, shard_rewards(g, j), b->entropy};
  g->batch[j] = v;
  return DRL_OK;
}

static const char *text_of(const drl_text *t) { return t->s ? t->s : ""; }

/* The text callback's arguments for every row of shard j: the prompt as the policy saw it (special tokens kept),
 * the response decoded as verl does (special tokens skipped) and the example's reference answer. */
static drl_status score_text(drl_grpo_iteration *g, drl_run *r, const drl_reward_source *src, int j) {
  const drl_rollout_batch *b = &g->rollouts[j];
  const int32_t *prompts = shard_prompts(g, j);
  const int64_t *offsets = shard_offsets(g, j);
  drl_text prompt = {0}, response = {0}, answer = {0};
  drl_status st = DRL_OK;
  for (int row = 0; st == DRL_OK && row < b->rows; ++row) {
    int i = row / b->G;
    if (row % b->G == 0) {
      st = drl_tokenizer_decode(&r->tok, prompts + offsets[i], offsets[i + 1] - offsets[i], 0, &prompt);
      if (st == DRL_OK) st = drl_run_answer_text(r, shard_examples(g, j)[i], &answer);
    }
    if (st == DRL_OK)
      st = drl_tokenizer_decode(&r->tok, b->tokens + (size_t)row * b->T + b->P, b->response_len[row], 1, &response);
    if (st == DRL_OK) shard_rewards(g, j)[row] = src->text_fn(text_of(&prompt), text_of(&response), text_of(&answer),
                                                               src->user);
  }
  drl_text_free(&prompt);
  drl_text_free(&response);
  drl_text_free(&answer);
  return st;
}

drl_status drl_grpo_iterate_score(drl_grpo_iteration *g, drl_run *r, const drl_reward_source *src, int j) {
  const drl_rollout_batch *b = &g->rollouts[j];
  const int32_t *prompts = shard_prompts(g, j);
  const int64_t *offsets = shard_offsets(g, j);
  float *rewards = shard_rewards(g, j);
  if (!src || (!src->fn && !src->text_fn)) return drl_run_score(r, b, prompts, offsets, shard_examples(g, j), rewards);
  DRL_RANGE("reward");
  if (src->text_fn) return score_text(g, r, src, j);
  for (int row = 0; row < b->rows; ++row) {
    int i = row / b->G;
    rewards[row] = src->fn(prompts + offsets[i], (int)(offsets[i + 1] - offsets[i]),
                           b->tokens + (size_t)row * b->T + b->P, b->response_len[row], src->user);
  }
  return DRL_OK;
}

drl_status drl_grpo_iterate_sample(drl_grpo_iteration *g, drl_run *r, const drl_reward_source *src, int64_t step,
                                   int j) {
  int64_t first_prompt = (int64_t)(g->first_shard + j) * g->n;
  drl_run_draw_prompts(r, (uint32_t)step, first_prompt, g->n, shard_prompts(g, j), shard_offsets(g, j),
                       shard_examples(g, j));
  DRL_TRY(drl_grpo_iterate_roll_out(g, r, step, j, shard_prompts(g, j), shard_offsets(g, j), g->n));
  return drl_grpo_iterate_score(g, r, src, j);
}

drl_status drl_grpo_iterate_update(drl_grpo_iteration *g, drl_run *r, const drl_grpo_iterate_at *at,
                                   drl_grpo_update_stats *stats) {
  g->rl.fault_step = at->step;
  return drl_grpo_update(&g->rl, &r->model, r->cfg, g->batch, &r->dp, &r->balance, at->iteration, at->total,
                         &r->optim_step, stats);
}

drl_status drl_grpo_iterate(drl_grpo_iteration *g, drl_run *r, const drl_reward_source *src,
                            const drl_grpo_iterate_at *at, drl_grpo_update_stats *stats) {
  for (int j = 0; j < g->shards; ++j) DRL_TRY(drl_grpo_iterate_sample(g, r, src, at->step, j));
  return drl_grpo_iterate_update(g, r, at, stats);
}
