#include "sft.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/philox.h"

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
  b->real = (uint8_t *)malloc(n);
  if (!b->tokens || !b->targets || !b->dlogprob || !b->real) {
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
  free(b->real);
  memset(b, 0, sizeof *b);
}

/* The example row r of step `step` draws. */
static int64_t sft_example(uint64_t seed, int step, int64_t r, int64_t n_train) {
  uint32_t tag = drl_rng_tag(DRL_RNG_DATA, DRL_UID_SFT_ORDER, 0);
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

int64_t drl_sft_tokens(const drl_dataset *ds, int64_t n_train, uint64_t seed, int step, int64_t rows) {
  int64_t n = 0;
  for (int64_t r = 0; n_train > 0 && r < rows; ++r) {
    int64_t i = sft_example(seed, step, r, n_train);
    n += ds->prompts.offsets[i + 1] - ds->prompts.offsets[i] + ds->answers.offsets[i + 1] - ds->answers.offsets[i];
  }
  return n;
}

/* Row r of the batch = example i (prompt then answer, right-padded); returns its answer tokens or -1 if too long. */
static int fill_row(drl_sft_batch *b, int r, const drl_dataset *ds, int64_t i) {
  int T = b->T;
  int32_t *tok = b->tokens + (size_t)r * T, *tg = b->targets + (size_t)r * T;
  uint8_t *real = b->real + (size_t)r * T;
  if (i < 0) { /* padding row */
    for (int t = 0; t < T; ++t) tok[t] = 0, tg[t] = -1, real[t] = 0;
    return 0;
  }
  const int32_t *p = ds->prompts.tokens + ds->prompts.offsets[i];
  const int32_t *a = ds->answers.tokens + ds->answers.offsets[i];
  int np = (int)(ds->prompts.offsets[i + 1] - ds->prompts.offsets[i]);
  int na = (int)(ds->answers.offsets[i + 1] - ds->answers.offsets[i]);
  if (np + na > T) return -1;
  for (int t = 0; t < T; ++t) {
    tok[t] = t < np ? p[t] : (t < np + na ? a[t - np] : 0);
    /* position t predicts token t + 1; only answer tokens are scored */
    tg[t] = (t + 1 >= np && t + 1 < np + na) ? a[t + 1 - np] : -1;
    real[t] = t < np + na;
  }
  return na;
}

/* dlogprob of the mean cross-entropy over `normaliser` answer tokens (0: the batch's own). */
static void set_gradient(drl_sft_batch *b, int64_t normaliser) {
  b->normaliser = normaliser > 0 ? normaliser : b->scored;
  float w = b->normaliser > 0 ? -1.0f / (float)b->normaliser : 0.0f;
  for (int64_t n = 0; n < (int64_t)b->B * b->T; ++n) b->dlogprob[n] = b->targets[n] >= 0 ? w : 0.0f;
}

drl_status drl_sft_batch_fill(drl_sft_batch *b, const drl_dataset *ds, int64_t n_train, uint64_t seed, int step,
                              int64_t first_row, int64_t normaliser) {
  if (n_train < 1) return DRL_FAIL(DRL_ERR_INVALID_ARG, "SFT: no training examples");
  b->scored = 0;
  for (int r = 0; r < b->B; ++r) {
    int64_t i = sft_example(seed, step, first_row + r, n_train);
    int na = fill_row(b, r, ds, i);
    if (na < 0)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "SFT: example %lld is longer than the batch length %d", (long long)i,
                      b->T);
    b->scored += na;
  }
  set_gradient(b, normaliser);
  return DRL_OK;
}

drl_status drl_sft_batch_fill_examples(drl_sft_batch *b, const drl_dataset *ds, int64_t first, int rows) {
  if (first < 0 || rows < 0 || rows > b->B || first + rows > ds->prompts.n || ds->answers.n != ds->prompts.n)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "SFT: examples [%lld, %lld) outside the dataset's %lld, or more than %d rows",
                    (long long)first, (long long)(first + rows), (long long)ds->prompts.n, b->B);
  b->scored = 0;
  for (int r = 0; r < b->B; ++r) {
    int na = fill_row(b, r, ds, r < rows ? first + r : -1);
    if (na < 0)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "SFT: example %lld is longer than the batch length %d",
                      (long long)(first + r), b->T);
    b->scored += na;
  }
  set_gradient(b, 0);
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
