#include "evaluate.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/nvtx.h"

/* Decodes one group of prompts [first, first + B); adds the group's rewards to *sum. */
static drl_status eval_group(drl_transformer *m, const drl_dataset *ds, int64_t first, int B, int max_new,
                             const drl_eval_scorer *sc, int32_t *tokens, int32_t *row_start, int *last, float *logits,
                             double *sum) {
  const int eos = sc->eos;
  int P = 0;
  for (int b = 0; b < B; ++b) {
    int np = (int)(ds->prompts.offsets[first + b + 1] - ds->prompts.offsets[first + b]);
    P = np > P ? np : P;
  }
  int T_max = P + max_new;
  if (T_max > m->T_max)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "eval: prompts of %d tokens plus %d new exceed the model's %d", P, max_new,
                    m->T_max);
  int V = drl_transformer_vocab_used(&m->cfg); /* the logits' width */
  int *done = last + B;
  for (int b = 0; b < B; ++b) {
    const int32_t *p = ds->prompts.tokens + ds->prompts.offsets[first + b];
    int np = (int)(ds->prompts.offsets[first + b + 1] - ds->prompts.offsets[first + b]);
    row_start[b] = P - np;
    for (int t = 0; t < T_max; ++t) tokens[(size_t)b * T_max + t] = t < P - np ? 0 : (t < P ? p[t - (P - np)] : 0);
    done[b] = 0;
  }
  /* Rows are laid out with stride T_max; each step runs the prefix of length T (no KV cache here: a few short
   * held-out completions, so recomputation is cheaper than the bookkeeping). */
  int32_t *step_tokens = tokens + (size_t)B * T_max;
  for (int T = P; T < T_max; ++T) {
    for (int b = 0; b < B; ++b) {
      memcpy(step_tokens + (size_t)b * T, tokens + (size_t)b * T_max, (size_t)T * sizeof(int32_t));
      last[b] = T - 1;
    }
    DRL_TRY(drl_transformer_forward(m, step_tokens, NULL, row_start, B, T, 1.0f, NULL, NULL));
    DRL_TRY(drl_transformer_logits_at(m, last, 1.0f, logits));
    int all_done = 1;
    for (int b = 0; b < B; ++b) {
      int best = 0;
      for (int v = 1; v < V; ++v)
        if (logits[(size_t)b * V + v] > logits[(size_t)b * V + best]) best = v;
      tokens[(size_t)b * T_max + T] = done[b] ? eos : best;
      if (best == eos) done[b] = 1;
      all_done &= done[b];
    }
    if (all_done) break;
  }
  for (int b = 0; b < B; ++b) {
    const int32_t *p = ds->prompts.tokens + ds->prompts.offsets[first + b];
    int np = (int)(ds->prompts.offsets[first + b + 1] - ds->prompts.offsets[first + b]);
    const int32_t *resp = tokens + (size_t)b * T_max + P;
    int len = 0;
    while (len < T_max - P && (len == 0 || resp[len - 1] != eos)) ++len; /* up to and including EOS */
    float r = 0.0f;
    DRL_TRY(sc->score(sc->user, first + b, p, np, resp, len, &r));
    *sum += r;
  }
  return DRL_OK;
}

drl_status drl_evaluate_greedy(drl_transformer *m, const drl_dataset *ds, int64_t first, int64_t n, int max_new,
                               const drl_eval_scorer *sc, double *accuracy) {
  DRL_RANGE("eval");
  *accuracy = 0.0;
  if (n <= 0) return DRL_OK;
  if (first < 0 || first + n > ds->prompts.n)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "eval: prompts [%lld, %lld) outside the dataset's %lld", (long long)first,
                    (long long)(first + n), (long long)ds->prompts.n);
  int Bg = m->B_max;
  size_t T = (size_t)m->T_max;
  int32_t *tokens = (int32_t *)malloc(2 * (size_t)Bg * T * sizeof(int32_t));
  int32_t *row_start = (int32_t *)malloc((size_t)Bg * sizeof(int32_t));
  int *last = (int *)malloc(2 * (size_t)Bg * sizeof(int));
  float *logits = (float *)malloc((size_t)Bg * (size_t)drl_transformer_vocab_used(&m->cfg) * sizeof(float));
  drl_status st = DRL_OK;
  if (!tokens || !row_start || !last || !logits) st = DRL_FAIL(DRL_ERR_OOM, "eval: out of memory");
  double sum = 0.0;
  for (int64_t g = first; st == DRL_OK && g < first + n; g += Bg) {
    int B = (int)(first + n - g < Bg ? first + n - g : Bg);
    st = eval_group(m, ds, g, B, max_new, sc, tokens, row_start, last, logits, &sum);
  }
  free(tokens);
  free(row_start);
  free(last);
  free(logits);
  if (st == DRL_OK) *accuracy = sum / (double)n;
  return st;
}
