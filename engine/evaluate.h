/* Held-out evaluation: greedy decoding of each prompt, scored by the run (the task's verifier, or text rewards). */
#ifndef DRL_EVALUATE_H
#define DRL_EVALUATE_H

#include <stdint.h>

#include "data/dataset.h"
#include "models/transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How the evaluation scores a response to example e (response_len tokens, the ending EOS included when emitted) and
 * which ids end one: eos, and n_stop more (a model's other EOS ids). */
typedef struct drl_eval_scorer {
  drl_status (*score)(void *user, int64_t e, const int32_t *prompt, int64_t prompt_len, const int32_t *response,
                      int64_t response_len, float *reward);
  void *user;
  int eos;
  const int32_t *stop_ids;
  int n_stop;
} drl_eval_scorer;

/* The summed reward of greedy completions (the most likely token at each step; ties to the lower id) of prompts
 * [first, first + n) of ds, into *reward_sum. Prompts are decoded with the KV cache in groups of up to model->B_max,
 * each for at most max_new tokens (fewer where the group's longest prompt leaves less room in model->T_max), until
 * every row has ended. Scored in order of e. */
drl_status drl_evaluate_greedy(drl_transformer *model, const drl_dataset *ds, int64_t first, int64_t n, int max_new,
                               const drl_eval_scorer *scorer, double *reward_sum);

#ifdef __cplusplus
}
#endif
#endif /* DRL_EVALUATE_H */
