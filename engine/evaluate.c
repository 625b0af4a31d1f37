#include "evaluate.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/nvtx.h"
#include "samplers/rollout.h"

/* Greedy decoding is the sampler with top_k = 1: the most likely id, ties to the lower one, whatever the draw. */
static drl_status eval_group(drl_rollout *ro, drl_transformer *m, const drl_dataset *ds, int64_t first, int B,
                             int max_new, const drl_eval_scorer *sc, int64_t *offsets, drl_rollout_batch *out,
                             double *sum) {
  const int64_t *off = ds->prompts.offsets + first;
  int P = 0;
  for (int b = 0; b < B; ++b) P = off[b + 1] - off[b] > P ? (int)(off[b + 1] - off[b]) : P;
  if (P >= m->T_max)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "eval: a prompt of %d tokens leaves no room in the model's %d", P, m->T_max);
  if (max_new > m->T_max - P) max_new = m->T_max - P;
  /* The sampler wants offsets from 0: the group's own, shifted. */
  for (int b = 0; b <= B; ++b) offsets[b] = off[b] - off[0];
  drl_rollout_params p = {1, max_new, 1.0f, 1, 1.0f, sc->eos, 0, 0, 0, 0, sc->stop_ids, sc->n_stop, NULL, NULL};
  DRL_TRY(drl_rollout_generate(ro, m, ds->prompts.tokens + off[0], offsets, B, &p, out));
  for (int b = 0; b < B; ++b) {
    float r = 0.0f;
    DRL_TRY(sc->score(sc->user, first + b, ds->prompts.tokens + off[b], off[b + 1] - off[b],
                      out->tokens + (size_t)b * out->T + out->P, out->response_len[b], &r));
    *sum += r;
  }
  return DRL_OK;
}

drl_status drl_evaluate_greedy(drl_transformer *m, const drl_dataset *ds, int64_t first, int64_t n, int max_new,
                               const drl_eval_scorer *sc, double *reward_sum) {
  DRL_RANGE("eval");
  *reward_sum = 0.0;
  if (n <= 0) return DRL_OK;
  if (first < 0 || first + n > ds->prompts.n)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "eval: prompts [%lld, %lld) outside the dataset's %lld", (long long)first,
                    (long long)(first + n), (long long)ds->prompts.n);
  if (max_new < 1) return DRL_FAIL(DRL_ERR_INVALID_ARG, "eval: max_new = %d; at least 1", max_new);
  int Bg = (int)(n < m->B_max ? n : m->B_max);
  drl_rollout ro;
  memset(&ro, 0, sizeof ro);
  drl_rollout_batch out;
  memset(&out, 0, sizeof out);
  int64_t *offsets = (int64_t *)malloc((size_t)(Bg + 1) * sizeof(int64_t));
  drl_status st = offsets ? drl_rollout_create(&ro, m, Bg, 1, m->T_max - max_new, max_new) : DRL_FAIL(DRL_ERR_OOM, "eval: out of memory");
  double sum = 0.0;
  for (int64_t g = first; st == DRL_OK && g < first + n; g += Bg) {
    int B = (int)(first + n - g < Bg ? first + n - g : Bg);
    st = eval_group(&ro, m, ds, g, B, max_new, sc, offsets, &out, &sum);
  }
  free(offsets);
  drl_rollout_batch_free(&out);
  drl_rollout_free(&ro);
  if (st == DRL_OK) *reward_sum = sum;
  return st;
}
