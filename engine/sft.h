/* Supervised fine-tuning batches: prompt + answer rows, cross-entropy on the answer tokens only. */
#ifndef DRL_SFT_H
#define DRL_SFT_H

#include <stdint.h>

#include "data/dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A batch of B rows of T tokens, right-padded (token 0, target -1). dlogprob is the gradient of the mean
 * cross-entropy over the scored tokens with respect to each position's log-probability. */
typedef struct drl_sft_batch {
  int B, T;
  int32_t *tokens, *targets;
  uint8_t *real;  /* positions holding an example's token (not padding) */
  float *dlogprob;
  int64_t scored; /* answer tokens in the batch */
  int64_t normaliser; /* the gradient's denominator (answer tokens of the whole, possibly sharded, batch) */
} drl_sft_batch;

/* The longest prompt + answer among examples [first, first + n) of ds (answers required). */
drl_status drl_sft_max_len(const drl_dataset *ds, int64_t first, int64_t n, int *max_len);

/* Allocates a batch of B x T. */
drl_status drl_sft_batch_alloc(drl_sft_batch *batch, int B, int T);

/* Frees a batch. */
void drl_sft_batch_free(drl_sft_batch *batch);

/* Fills the batch with rows [first_row, first_row + B) of optimizer step `step`: row r is the example the Philox data
 * stream (seed, step) draws from [0, n_train) at index r, so the same step always gets the same examples (a resumed
 * run sees the data an uninterrupted one does, a data-parallel shard the rows a single process does). The gradient is
 * that of the loss summed over the batch divided by `normaliser` answer tokens (0: this batch's own count). */
drl_status drl_sft_batch_fill(drl_sft_batch *batch, const drl_dataset *ds, int64_t n_train, uint64_t seed, int step,
                              int64_t first_row, int64_t normaliser);

/* Fills rows [0, rows) of the batch with examples [first, first + rows) of ds in order (the held-out set), the rest
 * with padding; normalised by its own answer tokens. */
drl_status drl_sft_batch_fill_examples(drl_sft_batch *batch, const drl_dataset *ds, int64_t first, int rows);

/* Answer tokens of rows [first_row, first_row + rows) of step `step` (the normaliser of a batch split into shards). */
int64_t drl_sft_scored(const drl_dataset *ds, int64_t n_train, uint64_t seed, int step, int64_t first_row,
                       int64_t rows);

/* Prompt and answer tokens of rows [0, rows) of step `step`: what the step trains on, padding not counted. */
int64_t drl_sft_tokens(const drl_dataset *ds, int64_t n_train, uint64_t seed, int step, int64_t rows);

/* Summed cross-entropy of the batch's answer tokens from per-position log-probabilities. */
double drl_sft_loss_sum(const drl_sft_batch *batch, const float *logprob);

/* Mean cross-entropy of the batch from per-position log-probabilities. */
double drl_sft_loss(const drl_sft_batch *batch, const float *logprob);

#ifdef __cplusplus
}
#endif
#endif /* DRL_SFT_H */
