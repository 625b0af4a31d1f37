#define _POSIX_C_SOURCE 200809L
#include "run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/bpe.h"
#include "data/checkpoint.h"
#include "data/task.h"
#include "data/vocab.h"
#include "engine/evaluate.h"
#include "engine/flow_policy.h"
#include "engine/log.h"
#include "engine/model_config.h"
#include "engine/policy.h"
#include "engine/sft.h"
#include "kernels/nvtx.h"
#include "kernels/philox.h"

static drl_status make_dir(const char *dir) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return DRL_FAIL(DRL_ERR_IO, "path too long: %s", dir);
  for (char *p = buf + 1;; ++p) {
    if (*p == '/' || *p == '\0') {
      char saved = *p;
      *p = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return DRL_FAIL(DRL_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
      *p = saved;
      if (!saved) break;
    }
  }
  return DRL_OK;
}

/* A text prompt set: scored on decoded text with the tokenizer of the pretrained policy, which must be the one that
 * made the set; responses end at any of the policy's EOS ids. */
static drl_status open_text_set(drl_run *r) {
  const char *path = r->cfg->data.path;
  if (!r->has_hf)
    return DRL_FAIL(DRL_ERR_CONFIG, "data.path = %s is a text prompt set: it needs a pretrained policy "
                    "(trainer.init_from) whose tokenizer made it", path);
  const char *dir = r->hf.dir[0] ? r->hf.dir : r->hf.source;
  char file[4200], hash[17];
  snprintf(file, sizeof file, "%s/tokenizer.json", dir);
  DRL_TRY(drl_bpe_load_hashed(file, &r->tok, hash));
  char set[4200];
  snprintf(set, sizeof set, "data.path = %s", path);
  DRL_TRY(drl_policy_check_tokenizer(set, r->data.tokenizer_hash, file, hash));
  DRL_TRY(drl_policy_eos_ids(&r->hf.cfg, dir, &r->eos, r->stop_ids, &r->n_stop));
  return drl_text_reward_parse(r->cfg->grpo.text_reward, &r->text_reward);
}

static drl_status load_data(drl_run *r) {
  const drl_config_data *d = &r->cfg->data;
  int64_t want = (int64_t)d->n_train + d->n_eval;
  if (d->path[0]) {
    DRL_TRY(drl_dataset_read(d->path, &r->data));
    if (strcmp(r->data.task, drl_cfg_task_name(d->task)) != 0)
      drl_log(DRL_LOG_INFO, "data.path = %s holds task '%s': data.task (%s) and data.size do not apply", d->path,
              r->data.task, drl_cfg_task_name(d->task));
    if (drl_dataset_is_text(&r->data)) DRL_TRY(open_text_set(r));
    /* A built-in task's rewards decode tokens with its own vocabulary: another one would train on garbage. */
    const char *vocab = drl_task_vocab(r->data.task);
    if (vocab && strcmp(vocab, r->data.vocab) != 0)
      return DRL_FAIL(DRL_ERR_FORMAT, "%s: task '%s' has the vocabulary \"%s\", the file holds \"%s\"", d->path,
                      r->data.task, vocab, r->data.vocab);
    if (r->data.prompts.n < want)
      return DRL_FAIL(DRL_ERR_CONFIG, "%s holds %lld examples, data.n_train + data.n_eval asks for %lld", d->path,
                      (long long)r->data.prompts.n, (long long)want);
  } else {
    /* one generated set split by index: examples [0, n_train) train, the next n_eval are held out */
    DRL_TRY(drl_task_generate(drl_cfg_task_name(d->task), want, r->cfg->run.seed, d->size, &r->data));
  }
  if (!drl_dataset_is_text(&r->data)) {
    r->eos = drl_vocab_eos(r->data.vocab);
    if (r->eos < 0) return DRL_FAIL(DRL_ERR_FORMAT, "the dataset's vocabulary has no end-of-sequence character");
    DRL_TRY(drl_tokenizer_char(r->data.vocab, &r->tok));
  }
  r->n_train = d->n_train;
  r->n_eval = d->n_eval;
  r->max_answer = (int)drl_token_seqs_longest(&r->data.answers, 0, r->data.answers.n);
  r->max_prompt = (int)drl_token_seqs_longest(&r->data.prompts, 0, r->n_train);
  int max_len = 0;
  DRL_TRY(drl_sft_max_len(&r->data, 0, want, &max_len));
  if (max_len > r->cfg->model.max_seq)
    return DRL_FAIL(DRL_ERR_CONFIG, "the longest example (prompt + answer) has %d tokens; model.max_seq is %d",
                    max_len, r->cfg->model.max_seq);
  return DRL_OK;
}

/* What the policy holds on its device (docs/models.md has the table for larger models). */
static void log_memory(const drl_run *r) {
  const double mb = 1e6, p = (double)r->model.ps.layout.total * 4.0;
  drl_log(DRL_LOG_INFO, "policy memory: parameters %.0f MB, gradients %.0f MB, AdamW %.0f MB, activations %.0f MB "
          "(%d x %d tokens)", p / mb, p / mb, 2 * p / mb, (double)r->model.act_bytes / mb, r->model.B_max,
          r->model.T_max);
}

/* A pretrained policy brings its own architecture: its config.json, not the configuration's model section. */
static drl_status make_pretrained_model(drl_run *r, int B_max) {
  const drl_config_model *mc = &r->cfg->model;
  drl_transformer_config tc = r->hf.cfg.model;
  int vocab = drl_dataset_is_text(&r->data) ? r->data.vocab_size : (int)strlen(r->data.vocab);
  if (mc->ffn != DRL_CFG_FFN_DENSE)
    return DRL_FAIL(DRL_ERR_CONFIG, "trainer.init_from = %s is a dense %s policy: model.ffn must be dense",
                    r->cfg->trainer.init_from, r->hf.cfg.model_type);
  if (tc.vocab < vocab)
    return DRL_FAIL(DRL_ERR_CONFIG, "trainer.init_from = %s has %d token ids, fewer than the dataset's vocabulary (%d)",
                    r->cfg->trainer.init_from, tc.vocab, vocab);
  /* The ids past the dataset's vocabulary are never sampled or scored (a tokenizer smaller than the embedding). */
  if (vocab < tc.vocab) tc.vocab_used = vocab;
  int T_max = mc->max_seq < tc.max_seq ? mc->max_seq : tc.max_seq;
  drl_log(DRL_LOG_INFO, "policy: %s from %s (%d layers, d_model %d, %d heads, %d kv heads, vocabulary %d); the "
          "model.* sizes of the configuration are not used", r->hf.cfg.model_type, r->hf.source, tc.n_layers,
          tc.d_model, tc.n_heads, tc.n_kv_heads, tc.vocab);
  /* No random init: trainer.init_from's weights (or a resumed checkpoint's) replace the parameters next. */
  DRL_TRY(drl_transformer_create(&r->model, &tc, &r->dev, B_max, T_max, DRL_TRANSFORMER_NO_INIT));
  r->ps = &r->model.ps;
  log_memory(r);
  return DRL_OK;
}

static drl_status make_model(drl_run *r, int B_max) {
  const drl_config_model *mc = &r->cfg->model;
  if (r->has_hf) return make_pretrained_model(r, B_max);
  int vocab = (int)strlen(r->data.vocab);
  if (mc->vocab_size != 0 && mc->vocab_size < vocab)
    return DRL_FAIL(DRL_ERR_CONFIG, "model.vocab_size = %d is smaller than the dataset's vocabulary (%d)",
                    mc->vocab_size, vocab);
  drl_transformer_config tc;
  drl_model_config(r->cfg, mc->vocab_size ? mc->vocab_size : vocab, &tc);
  DRL_TRY(drl_transformer_create(&r->model, &tc, &r->dev, B_max, mc->max_seq, r->cfg->run.seed));
  r->ps = &r->model.ps;
  log_memory(r);
  return DRL_OK;
}

/* The flow network of cfg's flow2d task. */
static drl_status make_flow(drl_run *r, int B_max) {
  drl_flow_policy_task(r->cfg, &r->task);
  drl_flow_config fc;
  drl_flow_policy_network(r->cfg, &fc);
  DRL_TRY(drl_flow_create(&r->flow, &fc, &r->dev, B_max, r->cfg->run.seed));
  r->ps = &r->flow.ps;
  return DRL_OK;
}

/* Copies a device buffer of n floats to a fresh host array. */
static drl_status to_host(const drl_device *dev, const float *src, int64_t n, float **out) {
  *out = (float *)malloc((size_t)(n ? n : 1) * sizeof(float));
  if (!*out) return drl_fail_oom("a host copy of the parameters", (size_t)n * sizeof(float), "the host");
  return drl_copy_to_host(dev, *out, src, (size_t)n * sizeof(float));
}

static int run_rank(const drl_run *r) { return r->comm ? r->comm->rank : 0; }
static int run_size(const drl_run *r) { return r->comm ? r->comm->size : 1; }

/* A whole optimizer moment on the host of rank 0 (gathered from the ranks' parts under ZeRO; NULL elsewhere). */
static drl_status moment_to_host(drl_run *r, const float *part, float **out) {
  int64_t n = r->ps->layout.total;
  *out = NULL;
  if (run_rank(r) != 0) return r->dp.zero ? drl_dp_gather_optim(&r->dp, &r->dev, n, part, NULL) : DRL_OK;
  *out = (float *)malloc((size_t)(n ? n : 1) * sizeof(float));
  if (!*out) return drl_fail_oom("a host copy of an AdamW moment", (size_t)n * sizeof(float), "the host");
  return drl_dp_gather_optim(&r->dp, &r->dev, n, part, *out);
}

drl_status drl_run_save(drl_run *r, const char *path, const char *phase, int step) {
  DRL_RANGE("checkpoint");
  drl_params *ps = r->ps;
  drl_checkpoint ck;
  memset(&ck, 0, sizeof ck);
  ck.layout = ps->layout;
  ck.optim_step = r->optim_step;
  ck.trainer_step = step;
  ck.bad_steps = r->bad.total;
  ck.bad_streak = r->bad.streak;
  snprintf(ck.phase, sizeof ck.phase, "%s", phase);
  ck.seed = r->cfg->run.seed;
  ck.threads = drl_cpu_threads();
  ck.config_yaml = r->config_yaml;
  ck.moe_bias = r->balance.bias;
  ck.moe_bias_n = (int64_t)r->balance.L * r->balance.E;
  if (r->has_hf) drl_hf_source_to_checkpoint(&r->hf, &ck);
  drl_status st = DRL_OK;
  /* On the CPU without ZeRO the whole state is already in host memory: written from where it is, not copied (three
   * copies of the parameters' size would double a large model's peak). */
  int in_place = r->dev.backend == DRL_BACKEND_CPU && !r->dp.zero;
  if (in_place) {
    ck.params = ps->params;
    ck.m = ps->m;
    ck.v = ps->v;
  } else {
    st = moment_to_host(r, ps->m, &ck.m);
    if (st == DRL_OK) st = moment_to_host(r, ps->v, &ck.v);
    if (st == DRL_OK && run_rank(r) == 0) st = to_host(&r->dev, ps->params, ps->layout.total, &ck.params);
  }
  if (st == DRL_OK && run_rank(r) == 0) st = drl_checkpoint_write(path, &ck);
  if (!in_place) {
    free(ck.params);
    free(ck.m);
    free(ck.v);
  }
  if (run_size(r) == 1) return st;
  /* Every rank learns whether rank 0 wrote it, so they all stop together when it could not. */
  int32_t code = st;
  drl_status bst = drl_comm_bcast(r->comm, &code, sizeof code, 0);
  if (st != DRL_OK || bst != DRL_OK) return st != DRL_OK ? st : bst;
  if (code != DRL_OK)
    return DRL_FAIL((drl_status)code, "rank 0 could not write the checkpoint %s (its message says why)", path);
  return DRL_OK;
}

/* Names the keys in which the configuration stored at path differs from this run's. */
static void warn_config_differs(const drl_run *r, const char *path, const char *stored_yaml) {
  drl_config stored, now;
  char names[512] = "";
  if (drl_config_load_string(&stored, stored_yaml, path) == DRL_OK &&
      drl_config_load_string(&now, r->config_yaml, "this run") == DRL_OK && drl_config_diff(&stored, &now, names,
                                                                                          sizeof names) == 0)
    return; /* the same values written differently */
  drl_log(DRL_LOG_WARN, "resuming from %s, whose configuration differs from this run's%s%s", path,
          names[0] ? " in " : "", names);
}

drl_status drl_run_resume(drl_run *r, const char *path, char *phase, size_t phase_cap, int *step) {
  drl_checkpoint ck;
  DRL_TRY(drl_checkpoint_read(path, &r->ps->layout, &ck));
  drl_status st = DRL_OK;
  if (ck.seed != r->cfg->run.seed)
    st = DRL_FAIL(DRL_ERR_CONFIG, "%s was written with run.seed %llu, this run has %llu", path,
                  (unsigned long long)ck.seed, (unsigned long long)r->cfg->run.seed);
  else if (!ck.m)
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s has no optimizer state to resume from", path);
  if (st == DRL_OK && r->dev.backend == DRL_BACKEND_CPU && ck.threads != drl_cpu_threads())
    drl_log(DRL_LOG_WARN,
            "%s was written with %lld CPU threads, this run has %d: results will differ from an uninterrupted run "
            "in the last bits (pin run.threads for bit-exact resume)",
            path, (long long)ck.threads, drl_cpu_threads());
  if (st == DRL_OK && strcmp(ck.config_yaml, r->config_yaml) != 0) warn_config_differs(r, path, ck.config_yaml);
  drl_params *ps = r->ps;
  size_t bytes = (size_t)ck.layout.total * sizeof(float);
  size_t part = (size_t)(ps->optim_hi - ps->optim_lo) * sizeof(float);
  if (st == DRL_OK) st = drl_copy_to_device(&r->dev, ps->params, ck.params, bytes);
  if (st == DRL_OK) st = drl_copy_to_device(&r->dev, ps->m, ck.m + ps->optim_lo, part);
  if (st == DRL_OK) st = drl_copy_to_device(&r->dev, ps->v, ck.v + ps->optim_lo, part);
  int64_t nb = (int64_t)r->balance.L * r->balance.E;
  if (st == DRL_OK && nb > 0 && ck.moe_bias_n != nb)
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s holds %lld MoE bias values, the policy has %lld", path,
                  (long long)ck.moe_bias_n, (long long)nb);
  if (st == DRL_OK && nb > 0) st = drl_moe_balance_set_bias(&r->balance, &r->model, ck.moe_bias);
  if (st == DRL_OK) st = drl_device_sync(&r->dev);
  snprintf(phase, phase_cap, "%s", ck.phase);
  *step = (int)ck.trainer_step;
  r->optim_step = ck.optim_step;
  r->bad.total = ck.bad_steps;
  r->bad.streak = ck.bad_streak;
  drl_checkpoint_free(&ck);
  return st;
}

/* Mean reward of tree.eval_samples deterministic ODE samples per condition (the same noises every time). */
static drl_status flow_evaluate(drl_run *r, double *reward) {
  DRL_RANGE("evaluate");
  const drl_config *cfg = r->cfg;
  int C = r->task.conditions, n = cfg->tree.eval_samples;
  int32_t *cond = (int32_t *)malloc((size_t)C * sizeof(int32_t));
  float *x = (float *)malloc((size_t)C * n * 2 * sizeof(float));
  drl_status st = cond && x ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for %d evaluation samples", C * n);
  for (int c = 0; st == DRL_OK && c < C; ++c) cond[c] = c;
  if (st == DRL_OK)
    st = drl_sde_tree_sample_ode(&r->flow, cond, C, n, cfg->tree.steps, (float)cfg->tree.shift, cfg->run.seed, x);
  double s = 0.0;
  for (int64_t i = 0; st == DRL_OK && i < (int64_t)C * n; ++i)
    s += drl_flow2d_reward(&r->task, x + 2 * i, (int)(i / n));
  *reward = s / ((double)C * n);
  free(cond);
  free(x);
  return st;
}

/* The evaluation's reward of one greedy response to example e: exact match for a task (whatever grpo.reward shapes
 * the training reward), grpo.text_reward for a text set. */
static drl_status score_example(void *user, int64_t e, const int32_t *prompt, int64_t prompt_len,
                                const int32_t *response, int64_t response_len, float *reward) {
  const drl_run *r = (const drl_run *)user;
  if (!drl_dataset_is_text(&r->data))
    return drl_task_reward(r->data.task, prompt, prompt_len, response, response_len, 0, reward);
  return drl_run_score_one(r, e, prompt, prompt_len, response, response_len, reward);
}

drl_status drl_run_evaluate(drl_run *r, double *acc) {
  if (r->flow_policy) return flow_evaluate(r, acc);
  if (r->n_eval == 0) {
    *acc = -1.0;
    return DRL_OK;
  }
  int R = run_size(r), me = run_rank(r);
  drl_eval_scorer sc = {score_example, r, r->eos, r->stop_ids, r->n_stop};
  /* A text response is as long as the rollouts' (reasoning before the answer); a task's answer is its longest. */
  int max_new = drl_dataset_is_text(&r->data) ? r->cfg->grpo.max_new_tokens : r->max_answer;
  int64_t a = r->n_eval * me / R, b = r->n_eval * (me + 1) / R;
  double sum = 0.0;
  DRL_TRY(drl_evaluate_greedy(&r->model, &r->data, r->n_train + a, b - a, max_new, &sc, &sum));
  if (R > 1) DRL_TRY(drl_comm_sum_f64(r->comm, &sum, &sum, 1));
  *acc = sum / (double)r->n_eval;
  return DRL_OK;
}

const char *drl_run_eval_name(const drl_run *r) {
  return drl_dataset_is_text(&r->data) ? "mean reward" : "exact match";
}

drl_status drl_run_make_out_dir(const drl_run *r) { return make_dir(r->cfg->run.out_dir); }

/* See run.h. Gathers the training prompts of iteration `step` (drawn by the Philox data stream) into tokens/offsets. */
void drl_run_draw_prompts(const drl_run *r, uint32_t step, int64_t first, int n, int32_t *tokens, int64_t *offsets,
                          int64_t *examples) {
  uint64_t seed = r->cfg->run.seed;
  uint32_t tag = drl_rng_tag(DRL_RNG_DATA, DRL_UID_GRPO_PROMPTS, 0);
  offsets[0] = 0;
  for (int i = 0; i < n; ++i) {
    int64_t e = (int64_t)(drl_rng_u64(seed, step, tag, (uint64_t)(first + i)) % (uint64_t)r->n_train);
    int64_t a = r->data.prompts.offsets[e], len = r->data.prompts.offsets[e + 1] - a;
    memcpy(tokens + offsets[i], r->data.prompts.tokens + a, (size_t)len * sizeof(int32_t));
    offsets[i + 1] = offsets[i] + len;
    if (examples) examples[i] = e;
  }
}

drl_status drl_run_score_one(const drl_run *r, int64_t e, const int32_t *prompt, int64_t prompt_len,
                             const int32_t *response, int64_t response_len, float *reward) {
  if (!drl_dataset_is_text(&r->data))
    return drl_task_reward(r->data.task, prompt, prompt_len, response, response_len,
                           r->cfg->grpo.reward == DRL_CFG_REWARD_PARTIAL, reward);
  if (e < 0 || e >= r->data.prompts.n)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "text reward: example %lld outside the set's %lld (prompts from elsewhere "
                    "need a reward callback)", (long long)e, (long long)r->data.prompts.n);
  drl_text text = {0};
  DRL_TRY(drl_tokenizer_decode(&r->tok, response, response_len, 1, &text));
  const int64_t *o = r->data.answer_text_offsets;
  double score = 0.0;
  drl_status st = drl_text_reward_eval(&r->text_reward, text.s ? text.s : "", (size_t)text.n, r->data.answer_text + o[e],
                                       (size_t)(o[e + 1] - o[e]), &score);
  drl_text_free(&text);
  *reward = (float)score;
  return st;
}

drl_status drl_run_answer_text(const drl_run *r, int64_t e, drl_text *out) {
  out->n = 0;
  DRL_TRY(drl_text_append(out, "", 0));
  if (e < 0 || e >= r->data.prompts.n) return DRL_OK;
  if (drl_dataset_is_text(&r->data)) {
    const int64_t *o = r->data.answer_text_offsets;
    return drl_text_append(out, r->data.answer_text + o[e], o[e + 1] - o[e]);
  }
  if (r->data.answers.n == 0) return DRL_OK;
  const int64_t *o = r->data.answers.offsets;
  return drl_tokenizer_decode(&r->tok, r->data.answers.tokens + o[e], o[e + 1] - o[e], 1, out);
}

/* See run.h. */
drl_status drl_run_score(drl_run *r, const drl_rollout_batch *b, const int32_t *prompts, const int64_t *offsets,
                         const int64_t *examples, float *rewards) {
  DRL_RANGE("reward");
  for (int row = 0; row < b->rows; ++row) {
    int i = row / b->G;
    DRL_TRY(drl_run_score_one(r, examples ? examples[i] : -1, prompts + offsets[i], offsets[i + 1] - offsets[i],
                              b->tokens + (size_t)row * b->T + b->P, b->response_len[row], &rewards[row]));
  }
  return DRL_OK;
}

drl_status drl_run_heldout(drl_run *r, double *loss, double *counts) {
  DRL_RANGE("heldout");
  int R = run_size(r), me = run_rank(r);
  int64_t a = r->n_train + r->n_eval * me / R, b = r->n_train + r->n_eval * (me + 1) / R;
  int T = 0;
  DRL_TRY(drl_sft_max_len(&r->data, 0, r->n_train + r->n_eval, &T));
  drl_sft_batch batch;
  DRL_TRY(drl_sft_batch_alloc(&batch, r->model.B_max, T));
  float *lp = (float *)malloc((size_t)batch.B * T * sizeof(float));
  drl_status st = lp ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for held-out log-probabilities");
  double sums[2] = {0.0, 0.0}; /* summed cross-entropy, answer tokens */
  for (int64_t e = a; st == DRL_OK && e < b; e += batch.B) {
    int rows = (int)(b - e < batch.B ? b - e : batch.B);
    st = drl_sft_batch_fill_examples(&batch, &r->data, e, rows);
    if (st == DRL_OK)
      st = drl_transformer_forward(&r->model, batch.tokens, batch.targets, NULL, rows, T, 1.0f, lp, NULL);
    if (st == DRL_OK && counts) st = drl_transformer_moe_routes(&r->model, batch.real, counts, NULL);
    if (st != DRL_OK) break;
    sums[0] += drl_sft_loss_sum(&batch, lp);
    sums[1] += (double)batch.scored;
  }
  free(lp);
  drl_sft_batch_free(&batch);
  DRL_TRY(st);
  if (R > 1) {
    DRL_TRY(drl_comm_sum_f64(r->comm, sums, sums, 2));
    if (counts) DRL_TRY(drl_comm_sum_f64(r->comm, counts, counts, r->balance.L * r->balance.E));
  }
  *loss = sums[1] > 0 ? sums[0] / sums[1] : 0.0;
  return DRL_OK;
}

drl_status drl_run_load_weights(drl_run *r, const char *path) {
  return drl_policy_load_weights(r->ps, &r->dev, r->model.cfg.tied_embeddings, path);
}

/* The threads of this rank: run.threads, or the node's cores shared among its ranks. */
static int rank_threads(const drl_config *cfg, const drl_comm *comm) {
  if (cfg->run.threads > 0 || !comm || comm->local_size < 2) return cfg->run.threads;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int t = cores > 0 ? (int)(cores / comm->local_size) : 1;
  return t > 0 ? t : 1;
}

/* Data parallelism over the job, and the policy's share of it: the ZeRO part of the optimizer state, the gradient
 * hook that starts reductions during the backward. */
static drl_status setup_dp(drl_run *r) {
  const drl_config_dist *d = &r->cfg->dist;
  drl_dp_options o = {d->shards, d->zero, d->deterministic, (int64_t)(d->bucket_mb * 1024.0 * 1024.0 / 4.0)};
  int64_t n = r->ps->layout.total, lo, hi;
  DRL_TRY(drl_dp_create(&r->dp, r->comm, &r->dev, n, &o));
  drl_dp_optim_range(&r->dp, n, &lo, &hi);
  if (lo != 0 || hi != n) DRL_TRY(drl_params_shard_optimizer(r->ps, lo, hi));
  if (r->dp.overlap && !r->flow_policy) drl_transformer_set_grad_hook(&r->model, drl_dp_grads_ready, &r->dp);
  return DRL_OK;
}

static drl_status open_env(const drl_config *cfg, const drl_comm *comm, drl_device *dev, char **config_yaml,
                           char *ckpt_path, size_t ckpt_cap) {
  *config_yaml = NULL;
  drl_cpu_set_threads(rank_threads(cfg, comm));
  /* The ranks of a node take consecutive GPUs from run.device_index. */
  drl_status st = drl_device_open(dev, drl_config_backend(cfg), cfg->run.device_index + (comm ? comm->local_rank : 0));
  if (st == DRL_ERR_NO_DEVICE || st == DRL_ERR_UNSUPPORTED)
    return drl_fail_context(st, "run.device = cuda (set run.device=cpu, or auto to use a GPU only when one is visible)");
  DRL_TRY(st);
  dev->allow_tf32 = cfg->optim.tf32;
  /* Checkpoints store the run's configuration, not this invocation's: a stopped and a resumed part store the same. */
  drl_config run_cfg = *cfg;
  run_cfg.trainer.resume = 0;
  run_cfg.trainer.force = 0;
  run_cfg.trainer.stop_after = 0;
  run_cfg.run.quiet = 0;
  st = drl_config_to_yaml(&run_cfg, config_yaml);
  if (st == DRL_OK && snprintf(ckpt_path, ckpt_cap, "%s/ckpt.h5", cfg->run.out_dir) >= (int)ckpt_cap)
    st = DRL_FAIL(DRL_ERR_CONFIG, "run.out_dir is too long: %s", cfg->run.out_dir);
  if (st != DRL_OK) {
    free(*config_yaml);
    *config_yaml = NULL;
    drl_device_close(dev);
  }
  return st;
}

drl_status drl_run_open(drl_run *r, const drl_config *cfg, drl_comm *comm, int B_max) {
  memset(r, 0, sizeof *r);
  r->cfg = cfg;
  r->comm = comm;
  drl_status st = DRL_OK;
  for (int p = 0; p < cfg->trainer.phases.count; ++p)
    r->flow_policy |= drl_flow_policy_phase(cfg->trainer.phases.items[p]);
  DRL_TRY_GOTO(drl_config_validate(cfg));
  DRL_TRY_GOTO(open_env(cfg, comm, &r->dev, &r->config_yaml, r->ckpt_path, sizeof r->ckpt_path));
  if (r->flow_policy) {
    DRL_TRY_GOTO(make_flow(r, B_max));
    DRL_TRY_GOTO(setup_dp(r));
    goto done;
  }
  if (cfg->trainer.init_from[0]) {
    int found = 0;
    DRL_TRY_GOTO(drl_hf_source_open(cfg->trainer.init_from, &r->hf, &found));
    r->has_hf = found != 0;
  }
  DRL_TRY_GOTO(load_data(r));
  DRL_TRY_GOTO(make_model(r, B_max));
  DRL_TRY_GOTO(setup_dp(r));
  DRL_TRY_GOTO(drl_moe_balance_init(&r->balance, cfg, &r->model, &r->dp));
done:
  if (st != DRL_OK) drl_run_close(r);
  return st;
}

void drl_run_close(drl_run *r) {
  drl_moe_balance_free(&r->balance);
  drl_dp_free(&r->dp);
  drl_transformer_free(&r->model);
  drl_flow_free(&r->flow);
  drl_dataset_free(&r->data);
  drl_hf_source_free(&r->hf);
  drl_tokenizer_free(&r->tok);
  free(r->config_yaml);
  drl_device_close(&r->dev);
  memset(r, 0, sizeof *r);
}

drl_status drl_run_count_step(drl_bad_steps *b, const char *phase, int64_t step, const char *what, int max,
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
    return DRL_FAIL(DRL_ERR_NUMERIC,
                    "%s step %lld: %lld consecutive steps with a non-finite %s (first in %s); "
                    "stopping; %s%s",
                    phase, (long long)step, (long long)b->streak, kind, b->first,
                    none ? "no checkpoint was written" : "the last good checkpoint is ", none ? "" : last_ckpt);
  }
  drl_log(DRL_LOG_WARN, "%s step %lld: non-finite %s (in %s): the step is skipped (%lld skipped, %lld in a row)", phase,
          (long long)step, strcmp(what, "loss") == 0 ? "loss" : "gradient", what, (long long)b->total,
          (long long)b->streak);
  return DRL_OK;
}
