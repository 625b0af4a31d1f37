#include "sft.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/philox.h"

/* The uid of the SFT example stream among DRL_RNG_DATA streams (tasks use 1-3). */
#define SFT_DATA_UID 16

drl_status drl_sft_max_len(const drl_dataset *ds, int64_t first, int64_t n, int *max_len) {
  if (ds->answers.n != ds->prompts.n) return DRL_FAIL(DRL_ERR_INVALID_ARG, "SFT needs a dataset with answers");
  if (first < 0 || n < 0 || first + n > ds->prompts.n)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "SFT: examples [%lld, %lld) outside the dataset's %lld", (long long)first,
                    (long long)(first + n), (long long)ds->prompts.n);
  int64_t best = 0;
  for (int64_t i = first; i < first + n; ++i) {
    int64_t len = ds->prompts.offsets[i + 1] - ds->prompts.offsets[i] + ds->answers.offsets[i + 1] -
                  ds->answers.offsets[i];
    if (len > best) best = len;
  }
  *max_len = (int)best;
  return DRL_OK;
}

drl_status drl_sft_batch_alloc(drl_sft_batch *b, int B, int T) {
  memset(b, 0, sizeof *b);
  size_t n = (size_t)B * (size_t)T;
  b->tokens = (int32_t *)malloc(n * sizeof(int32_t));
  b->targets = (int32_t *)malloc(n * sizeof(int32_t));
  b->dlogprob = (float *)malloc(n * sizeof(float));
  if (!b->tokens || !b->targets || !b->dlogprob) {
    drl_sft_batch_free(b);
    return DRL_FAIL(DRL_ERR_OOM, "out of memory for an SFT batch of %d x %d", B, T);
  }
  b->B = B;
  b->T = T;
  return DRL_OK;
}

void drl_sft_batch_free(drl_sft_batch *b) {
  free(b->tokens);
  free(b->targets);
  free(b->dlogprob);
  memset(b, 0, sizeof *b);
}

/* The example row r of step `step` draws. */
static int64_t sft_example(uint64_t seed, int step, int64_t r, int64_t n_train) {
  uint32_t tag = drl_rng_tag(DRL_RNG_DATA, SFT_DATA_UID, 0);
  return (int64_t)(drl_rng_u64(seed, (uint32_t)step, tag, (uint64_t)r) % (uint64_t)n_train);
}

int64_t drl_sft_scored(const drl_dataset *ds, int64_t n_train, uint64_t seed, int step, int64_t first_row,
                       int64_t rows) {
  int64_t scored = 0;
  for (int64_t r = first_row; n_train > 0 && r < first_row + rows; ++r) {
    int64_t i = sft_example(seed, step, r, n_train);
    scored += ds->answers.offsets[i + 1] - ds->answers.offsets[i];
  }
  return scored;
}

drl_status drl_sft_batch_fill(drl_sft_batch *b, const drl_dataset *ds, int64_t n_train, uint64_t seed, int step,
                              int64_t first_row, int64_t normaliser) {
  if (n_train < 1) return DRL_FAIL(DRL_ERR_INVALID_ARG, "SFT: no training examples");
  int B = b->B, T = b->T;
  b->scored = 0;
  for (int r = 0; r < B; ++r) {
    int64_t i = sft_example(seed, step, first_row + r, n_train);
    const int32_t *p = ds->prompts.tokens + ds->prompts.offsets[i];
    const int32_t *a = ds->answers.tokens + ds->answers.offsets[i];
    int np = (int)(ds->prompts.offsets[i + 1] - ds->prompts.offsets[i]);
    int na = (int)(ds->answers.offsets[i + 1] - ds->answers.offsets[i]);
    if (np + na > T)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "SFT: example %lld has %d tokens, more than the batch length %d",
                      (long long)i, np + na, T);
    int32_t *tok = b->tokens + (size_t)r * T, *tg = b->targets + (size_t)r * T;
    for (int t = 0; t < T; ++t) {
      tok[t] = t < np ? p[t] : (t < np + na ? a[t - np] : 0);
      /* position t predicts token t + 1; only answer tokens are scored */
      tg[t] = (t + 1 >= np && t + 1 < np + na) ? a[t + 1 - np] : -1;
    }
    b->scored += na;
  }
  b->normaliser = normaliser > 0 ? normaliser : b->scored;
  float w = b->normaliser > 0 ? -1.0f / (float)b->normaliser : 0.0f;
  for (int64_t n = 0; n < (int64_t)B * T; ++n) b->dlogprob[n] = b->targets[n] >= 0 ? w : 0.0f;
  return DRL_OK;
}

double drl_sft_loss_sum(const drl_sft_batch *b, const float *logprob) {
  double s = 0.0;
  for (int64_t n = 0; n < (int64_t)b->B * b->T; ++n)
    if (b->targets[n] >= 0) s -= logprob[n];
  return s;
}

double drl_sft_loss(const drl_sft_batch *b, const float *logprob) {
  return b->scored > 0 ? drl_sft_loss_sum(b, logprob) / (double)b->scored : 0.0;
}
