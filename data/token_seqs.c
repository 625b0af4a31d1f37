/* drl_token_seqs storage (declared in dataset.h): each array is one plain malloc'd block, so whoever fills a
 * drl_token_seqs (file reader, task generator) hands it to the same free. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "kernels/device.h"

drl_status drl_token_seqs_alloc(drl_token_seqs *seqs, int64_t n, int64_t n_tokens) {
  if (!seqs) return DRL_FAIL(DRL_ERR_INVALID_ARG, "token_seqs_alloc: seqs is NULL");
  memset(seqs, 0, sizeof *seqs);
  if (n < 0 || n_tokens < 0)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "token_seqs_alloc: negative size (n %lld, n_tokens %lld)", (long long)n,
                    (long long)n_tokens);
  /* Sizes that overflow size_t cannot be allocated anyway; say so instead of wrapping. */
  if ((uint64_t)n >= SIZE_MAX / sizeof(int64_t) || (uint64_t)n_tokens >= SIZE_MAX / sizeof(int32_t))
    return DRL_FAIL(DRL_ERR_OOM, "token_seqs_alloc: %lld sequences / %lld tokens exceed the address space",
                    (long long)n, (long long)n_tokens);
  /* At least one token slot, so tokens is never NULL even for an empty set (malloc(0) may return NULL). */
  int64_t *offsets = (int64_t *)calloc((size_t)n + 1, sizeof(int64_t));
  int32_t *tokens = (int32_t *)calloc(n_tokens > 0 ? (size_t)n_tokens : 1, sizeof(int32_t));
  if (!offsets || !tokens) {
    free(offsets);
    free(tokens);
    return drl_fail_oom("dataset token arrays", ((size_t)n + 1) * sizeof(int64_t) + (size_t)n_tokens * sizeof(int32_t),
                        "the host");
  }
  seqs->n = n;
  seqs->offsets = offsets;
  seqs->tokens = tokens;
  return DRL_OK;
}

void drl_token_seqs_free(drl_token_seqs *seqs) {
  if (!seqs) return;
  free(seqs->tokens);
  free(seqs->offsets);
  memset(seqs, 0, sizeof *seqs);
}

int64_t drl_token_seqs_longest(const drl_token_seqs *s, int64_t first, int64_t n) {
  int64_t longest = 0;
  for (int64_t i = first; i < first + n; ++i) {
    int64_t len = s->offsets[i + 1] - s->offsets[i];
    longest = len > longest ? len : longest;
  }
  return longest;
}
