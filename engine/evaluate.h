/* Held-out evaluation: greedy decoding of each prompt, scored by the run (the task's verifier, or text rewards). */
#ifndef DRL_EVALUATE_H
#define DRL_EVALUATE_H

#include <stdint.h>

#include "data/dataset.h"
#include "models/transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How the evaluation scores a response to example e and which id ends one. */
typedef struct drl_eval_scorer {
  drl_status (*score)(void *user, int64_t e, const int32_t *prompt, int64_t prompt_len, const int32_t *response,
                      int64_t response_len, float *reward);
  void *user;
  int eos;
} drl_eval_scorer;

/* Mean reward of greedy completions of prompts [first, first + n) of ds. Prompts are left-padded in groups of up to
 * model->B_max rows and decoded until every row has produced the scorer's EOS or max_new tokens. */
drl_status drl_evaluate_greedy(drl_transformer *model, const drl_dataset *ds, int64_t first, int64_t n, int max_new,
                               const drl_eval_scorer *scorer, double *accuracy);

#ifdef __cplusplus
}
#endif
#endif /* DRL_EVALUATE_H */
