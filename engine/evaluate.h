/* Held-out evaluation: greedy decoding of each prompt, scored by the task's verifier (exact match). */
#ifndef DRL_EVALUATE_H
#define DRL_EVALUATE_H

#include <stdint.h>

#include "data/dataset.h"
#include "models/transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Mean exact-match reward of greedy completions of prompts [first, first + n) of ds. Prompts are left-padded in groups
 * of up to model->B_max rows and decoded until every row has produced EOS or max_new tokens. */
drl_status drl_evaluate_greedy(drl_transformer *model, const drl_dataset *ds, int64_t first, int64_t n, int max_new,
                               double *accuracy);

#ifdef __cplusplus
}
#endif
#endif /* DRL_EVALUATE_H */
