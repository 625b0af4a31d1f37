#include "policy_eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/h5.h"
#include "data/task.h"
#include "data/text_reward.h"
#include "engine/evaluate.h"

typedef struct eval_ctx {
  drl_policy *p;
  const drl_dataset *ds;
  drl_text_reward_spec spec;
  drl_policy_eval *out;
  drl_text one;
  int64_t done, correct;
  drl_eval_progress_fn progress;
  void *user;
} eval_ctx;

/* Scores and keeps one response (the evaluation calls this in order of e). */
static drl_status score_and_keep(void *user, int64_t e, const int32_t *prompt, int64_t prompt_len,
                                 const int32_t *response, int64_t response_len, float *reward) {
  eval_ctx *c = (eval_ctx *)user;
  drl_policy_eval *out = c->out;
  DRL_TRY(drl_tokenizer_decode(&c->p->tok, response, response_len, 1, &c->one));
  const char *text = c->one.s ? c->one.s : "";
  double score = 0.0, first = 0.0;
  if (drl_dataset_is_text(c->ds)) {
    const int64_t *o = c->ds->answer_text_offsets;
    const char *answer = c->ds->answer_text + o[e];
    size_t answer_len = (size_t)(o[e + 1] - o[e]);
    DRL_TRY(drl_text_reward_eval(&c->spec, text, (size_t)c->one.n, answer, answer_len, &score));
    DRL_TRY(drl_text_reward_score(c->spec.kind[0], text, (size_t)c->one.n, answer, answer_len, &first));
  } else {
    float r = 0.0f;
    DRL_TRY(drl_task_reward(c->ds->task, prompt, prompt_len, response, response_len, 0, &r));
    score = first = r;
  }
  *reward = (float)score;
  out->reward[e] = (float)score;
  out->length[e] = (int32_t)response_len;
  out->correct[e] = first >= 1.0;
  DRL_TRY(drl_text_append(&out->text, text, c->one.n));
  out->text_offsets[e + 1] = out->text.n;
  c->correct += out->correct[e];
  c->done = e + 1;
  if (c->progress) c->progress(c->user, c->done, out->n, c->correct);
  return DRL_OK;
}

drl_status drl_policy_evaluate(drl_policy *p, const drl_dataset *ds, int64_t n, const char *reward_spec, int max_new,
                               drl_eval_progress_fn progress, void *user, drl_policy_eval *out) {
  memset(out, 0, sizeof *out);
  if (n < 1 || n > ds->prompts.n)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "eval: %lld prompts of a set of %lld", (long long)n, (long long)ds->prompts.n);
  eval_ctx c;
  memset(&c, 0, sizeof c);
  c.p = p, c.ds = ds, c.out = out, c.progress = progress, c.user = user;
  if (drl_dataset_is_text(ds)) {
    const char *spec = reward_spec && reward_spec[0] ? reward_spec : "exact";
    DRL_TRY(drl_text_reward_parse(spec, &c.spec));
    snprintf(out->reward_spec, sizeof out->reward_spec, "%s", spec);
  } else {
    if (reward_spec && reward_spec[0])
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "eval: the task set '%s' is scored by exact match; a reward spec (%s) is "
                      "for text sets", ds->task, reward_spec);
    snprintf(out->reward_spec, sizeof out->reward_spec, "exact match");
  }
  out->n = n;
  out->reward = (float *)calloc((size_t)n, sizeof(float));
  out->length = (int32_t *)calloc((size_t)n, sizeof(int32_t));
  out->correct = (uint8_t *)calloc((size_t)n, 1);
  out->text_offsets = (int64_t *)calloc((size_t)n + 1, sizeof(int64_t));
  drl_status st = out->reward && out->length && out->correct && out->text_offsets
                      ? drl_text_append(&out->text, "", 0)
                      : DRL_FAIL(DRL_ERR_OOM, "eval: out of memory for %lld results", (long long)n);
  drl_eval_scorer sc = {score_and_keep, &c, p->eos, p->stop_ids, p->n_stop};
  double sum = 0.0;
  if (st == DRL_OK) st = drl_evaluate_greedy(&p->model, ds, 0, n, max_new, &sc, &sum);
  drl_text_free(&c.one);
  if (st != DRL_OK) {
    drl_policy_eval_free(out);
    return st;
  }
  out->mean_reward = sum / (double)n;
  out->accuracy = (double)c.correct / (double)n;
  return DRL_OK;
}

drl_status drl_policy_eval_write(const drl_policy_eval *ev, const char *path, const char *policy, const char *data,
                                 int max_new) {
  drl_h5_writer w;
  DRL_TRY(drl_h5_writer_open(&w, path));
  drl_h5_file *f = &w.file;
  drl_status st = drl_h5_write_array1d(f, "/eval/reward", DRL_H5_FLOAT32, ev->n, ev->reward);
  if (st == DRL_OK) st = drl_h5_write_array1d(f, "/eval/length", DRL_H5_INT32, ev->n, ev->length);
  if (st == DRL_OK) st = drl_h5_write_array1d(f, "/eval/correct", DRL_H5_UINT8, ev->n, ev->correct);
  if (st == DRL_OK) st = drl_h5_write_array1d(f, "/eval/response", DRL_H5_UINT8, ev->text.n, ev->text.s);
  if (st == DRL_OK) st = drl_h5_write_array1d(f, "/eval/response_offsets", DRL_H5_INT64, ev->n + 1, ev->text_offsets);
  if (st == DRL_OK) st = drl_h5_write_attr_string(f, "/eval", "policy", policy);
  if (st == DRL_OK) st = drl_h5_write_attr_string(f, "/eval", "data", data);
  if (st == DRL_OK) st = drl_h5_write_attr_string(f, "/eval", "reward", ev->reward_spec);
  if (st == DRL_OK) st = drl_h5_write_attr_int64(f, "/eval", "max_new_tokens", max_new);
  if (st == DRL_OK) st = drl_h5_write_attr_double(f, "/eval", "accuracy", ev->accuracy);
  if (st == DRL_OK) st = drl_h5_write_attr_double(f, "/eval", "mean_reward", ev->mean_reward);
  if (st == DRL_OK) return drl_h5_writer_commit(&w);
  drl_h5_writer_abort(&w);
  return st;
}

void drl_policy_eval_free(drl_policy_eval *ev) {
  free(ev->reward);
  free(ev->length);
  free(ev->correct);
  free(ev->text_offsets);
  drl_text_free(&ev->text);
  memset(ev, 0, sizeof *ev);
}
