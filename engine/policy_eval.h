/* `dynrl eval`: a policy's greedy responses to the prompts of a dataset, each scored and kept. */
#ifndef DRL_POLICY_EVAL_H
#define DRL_POLICY_EVAL_H

#include <stdint.h>

#include "data/dataset.h"
#include "data/text_buf.h"
#include "engine/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What was scored, per prompt i < n: the response decoded (special tokens skipped) at
 * text.s[text_offsets[i], text_offsets[i + 1]), its length in tokens (the ending EOS included), its reward, and
 * whether it is correct: for a text set the first reward of the spec scores 1 (the answer is right, whatever the
 * other terms), for a task set the exact match. */
typedef struct drl_policy_eval {
  int64_t n;
  float *reward;
  int32_t *length;
  uint8_t *correct;
  drl_text text;
  int64_t *text_offsets;
  double mean_reward, accuracy;
  char reward_spec[256]; /* the spec used ("exact match" for a task set) */
} drl_policy_eval;

/* Called after each prompt is scored: done of n, with the correct ones so far. */
typedef void (*drl_eval_progress_fn)(void *user, int64_t done, int64_t n, int64_t correct);

/* Greedy responses of the loaded policy p (drl_policy_load, for any B_max and a T_max that holds the longest of the
 * prompts plus max_new) to prompts [0, n) of ds (checked with drl_policy_check_dataset), of at most max_new tokens,
 * scored by reward_spec (a text set's grpo.text_reward form, e.g. "gsm8k:1,think_format:0.1"; a task set takes NULL
 * or "" and is scored by exact match), into out. */
drl_status drl_policy_evaluate(drl_policy *p, const drl_dataset *ds, int64_t n, const char *reward_spec, int max_new,
                               drl_eval_progress_fn progress, void *user, drl_policy_eval *out);

/* Writes out as HDF5 to path, atomically: /eval/reward [n] float32, /eval/length [n] int32, /eval/correct [n] uint8,
 * /eval/response [bytes] uint8 with /eval/response_offsets [n + 1] int64, and attributes of /eval: policy, data,
 * reward, max_new_tokens, accuracy, mean_reward. */
drl_status drl_policy_eval_write(const drl_policy_eval *ev, const char *path, const char *policy, const char *data,
                                 int max_new);

/* Frees the results; safe on a zeroed struct. */
void drl_policy_eval_free(drl_policy_eval *ev);

#ifdef __cplusplus
}
#endif
#endif /* DRL_POLICY_EVAL_H */
