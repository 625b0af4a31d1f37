/* The public C API (include/dynrl.h): a drl_run and one GRPO iteration's buffers (engine/grpo_iterate.h), for host
 * trainers. generate and train are the iteration's stages; iterate is the whole iteration, as the trainer runs it. */
#include <dynrl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/chat_template.h"
#include "data/tokenizer.h"
#include "engine/config.h"
#include "engine/grpo_iterate.h"
#include "engine/run.h"
#include "kernels/status.h"

struct drl_engine {
  drl_config cfg;
  drl_run run;
  drl_grpo_iteration grpo;    /* one shard: the rollouts of the last generate, their rewards, the update state */
  drl_reward_source reward;   /* the host's reward callback (none: the run's own scoring) */
  int64_t iteration;
  int has_batch;
  drl_text texts;             /* the last generate's responses, decoded one after another, NUL after each */
  const char **text_of;       /* [rows]: where each starts in texts */
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
  int rows = g->prompts_per_step * g->group_size, T = e->cfg.model.max_seq;
  if (st == DRL_OK) st = drl_run_open(&e->run, &e->cfg, NULL, rows < 64 ? rows : 64);
  if (st == DRL_OK)
    st = drl_grpo_iterate_create(&e->grpo, &e->run, 1, 0, g->prompts_per_step, (int64_t)T * g->prompts_per_step, T);
  if (st != DRL_OK) {
    drl_engine_destroy(e);
    return st;
  }
  *out = e;
  return DRL_OK;
}

void drl_engine_destroy(drl_engine *e) {
  if (!e) return;
  drl_grpo_iterate_free(&e->grpo, &e->run);
  drl_run_close(&e->run);
  drl_text_free(&e->texts);
  free(e->text_of);
  free(e);
}

const char *drl_engine_vocab(const drl_engine *e) { return e ? e->run.data.vocab : ""; }

/* ids (n of them) into the caller's buffer of cap. */
static drl_status give_ids(const drl_ids *ids, int32_t *out, int64_t cap, int64_t *n) {
  *n = ids->n;
  if (cap > 0 && ids->n > 0) memcpy(out, ids->v, (size_t)(ids->n < cap ? ids->n : cap) * sizeof *out);
  if (ids->n > cap)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "encode: %lld tokens do not fit in a buffer of %lld", (long long)ids->n,
                    (long long)cap);
  return DRL_OK;
}

static drl_status check_out(const void *buf, int64_t cap, int64_t *n) {
  DRL_TRY(need(n, "n"));
  *n = 0;
  if (cap < 0 || (cap > 0 && !buf)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "bad output buffer (cap %lld)", (long long)cap);
  return DRL_OK;
}

drl_status drl_engine_encode(drl_engine *e, const char *text, int32_t *ids, int64_t cap, int64_t *n) {
  DRL_TRY(need(e, "engine"));
  DRL_TRY(need(text, "text"));
  DRL_TRY(check_out(ids, cap, n));
  drl_ids out = {0};
  drl_status st = drl_tokenizer_encode(&e->run.tok, text, (int64_t)strlen(text), 1, &out);
  if (st == DRL_OK) st = give_ids(&out, ids, cap, n);
  drl_ids_free(&out);
  return st;
}

drl_status drl_engine_encode_chat(drl_engine *e, const char *system, const char *prompt, int32_t *ids, int64_t cap,
                                  int64_t *n) {
  DRL_TRY(need(e, "engine"));
  DRL_TRY(need(prompt, "prompt"));
  DRL_TRY(check_out(ids, cap, n));
  if (!drl_dataset_is_text(&e->run.data))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "encode_chat: the task '%s' has no chat template (drl_engine_encode its "
                    "prompt)", e->run.data.task);
  drl_chat_template t;
  DRL_TRY(drl_chat_template_get(e->run.data.template_name, &t));
  drl_ids out = {0};
  drl_status st = drl_chat_encode_prompt(&t, &e->run.tok, system, prompt, &out);
  if (st == DRL_OK) st = give_ids(&out, ids, cap, n);
  drl_ids_free(&out);
  return st;
}

drl_status drl_engine_decode(const drl_engine *e, const int32_t *ids, int64_t n, int skip_special, char *text,
                             int64_t cap, int64_t *len) {
  DRL_TRY(need(e, "engine"));
  DRL_TRY(check_out(text, cap, len));
  if (n < 0 || (n > 0 && !ids)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "decode: %lld ids at %p", (long long)n,
                                                (const void *)ids);
  drl_text out = {0};
  drl_status st = drl_tokenizer_decode(&e->run.tok, ids, n, skip_special, &out);
  if (st == DRL_OK) {
    *len = out.n;
    if (out.n + 1 > cap)
      st = DRL_FAIL(DRL_ERR_INVALID_ARG, "decode: %lld bytes of text do not fit in a buffer of %lld",
                    (long long)out.n + 1, (long long)cap);
    else
      memcpy(text, out.s ? out.s : "", (size_t)out.n + 1);
  }
  drl_text_free(&out);
  return st;
}

/* Every response of b decoded (special tokens skipped) into e->texts, and e->text_of pointing at each. */
static drl_status decode_responses(drl_engine *e, const drl_rollout_batch *b) {
  int64_t *starts = (int64_t *)malloc((size_t)b->rows * sizeof *starts);
  const char **of = (const char **)realloc(e->text_of, (size_t)b->rows * sizeof *of);
  if (of) e->text_of = of;
  drl_status st = starts && of ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for %d decoded responses", b->rows);
  e->texts.n = 0;
  drl_text one = {0};
  for (int row = 0; st == DRL_OK && row < b->rows; ++row) {
    starts[row] = e->texts.n;
    st = drl_tokenizer_decode(&e->run.tok, b->tokens + (size_t)row * b->T + b->P, b->response_len[row], 1, &one);
    if (st == DRL_OK) st = drl_text_append(&e->texts, one.s ? one.s : "", one.n + 1); /* its NUL too */
  }
  for (int row = 0; st == DRL_OK && row < b->rows; ++row) e->text_of[row] = e->texts.s + starts[row];
  drl_text_free(&one);
  free(starts);
  return st;
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
  e->has_batch = 0;
  DRL_TRY(drl_grpo_iterate_roll_out(&e->grpo, &e->run, e->iteration + 1, 0, tokens, offsets, n_prompts));
  const drl_rollout_batch *b = &e->grpo.rollouts[0];
  DRL_TRY(decode_responses(e, b));
  e->has_batch = 1;
  drl_rollouts r = {b->n_prompts, b->G, b->rows, b->P, b->T, b->tokens, b->row_start, b->response_len,
                    b->logprob, b->entropy, b->mask, e->text_of};
  *out = r;
  return DRL_OK;
}

/* Where the next iteration stands: the engine counts its own iterations as the job's steps. */
static drl_grpo_iterate_at next_at(const drl_engine *e) {
  drl_grpo_iterate_at at = {e->iteration + 1, (int)e->iteration + 1, e->cfg.grpo.steps};
  return at;
}

/* After an iteration's updates: the engine's counters and statistics. */
static drl_status finish(drl_engine *e, const drl_grpo_update_stats *rl, drl_stats *stats) {
  const drl_grpo_update_stats s = *rl;
  e->iteration++;
  drl_status st =
      drl_run_count_step(&e->run.bad, "grpo", e->iteration, s.bad, e->cfg.trainer.max_bad_steps, e->last_ckpt);
  drl_stats out = {e->iteration, e->run.optim_step, s.reward_mean, s.reward_std, s.loss, s.grad_norm,
                   s.clip_frac, s.kl, s.entropy, s.usefulness, s.kept_samples, s.kept_tokens,
                   e->grpo.rollouts[0].generated_tokens, s.bad[0] != 0, e->run.bad.total};
  e->stats = out;
  if (stats) *stats = out;
  return st;
}

drl_status drl_engine_train(drl_engine *e, const float *rewards, drl_stats *stats) {
  DRL_TRY(need(e, "engine"));
  DRL_TRY(need(rewards, "rewards"));
  if (!e->has_batch) return DRL_FAIL(DRL_ERR_INVALID_ARG, "train: no rollouts (call drl_engine_generate first)");
  memmove(e->grpo.rewards, rewards, (size_t)e->grpo.rollouts[0].rows * sizeof(float));
  drl_grpo_iterate_at at = next_at(e);
  drl_grpo_update_stats s;
  e->has_batch = 0;
  DRL_TRY(drl_grpo_iterate_update(&e->grpo, &e->run, &at, &s));
  return finish(e, &s, stats);
}

drl_status drl_engine_set_reward(drl_engine *e, drl_reward_fn fn, void *user) {
  DRL_TRY(need(e, "engine"));
  drl_reward_source src = {fn, NULL, user};
  e->reward = src;
  return DRL_OK;
}

drl_status drl_engine_set_text_reward(drl_engine *e, drl_text_reward_fn fn, void *user) {
  DRL_TRY(need(e, "engine"));
  drl_reward_source src = {NULL, fn, user};
  e->reward = src;
  return DRL_OK;
}

drl_status drl_engine_iterate(drl_engine *e, drl_stats *stats) {
  DRL_TRY(need(e, "engine"));
  drl_grpo_iterate_at at = next_at(e);
  drl_grpo_update_stats s;
  e->has_batch = 0;
  DRL_TRY(drl_grpo_iterate(&e->grpo, &e->run, &e->reward, &at, &s));
  return finish(e, &s, stats);
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
