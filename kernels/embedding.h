/* Token embedding lookup and its gradient. */
#ifndef DRL_EMBEDDING_H
#define DRL_EMBEDDING_H

#include <stdint.h>

#include "device.h"
#include "hd.h"
#include "philox.h" /* drl_fadd: explicitly rounded */

#ifdef __cplusplus
extern "C" {
#endif

/* out[n, :] = table[tokens[n], :] for n < N; every token must be in [0, V) (checked on the CPU, where a bad token is
 * DRL_ERR_INVALID_ARG naming it and its position, and nothing is written). The GPU cannot report without a sync:
 * there a bad token's row is written as NaN, so the loss shows it, and nothing outside the table is read. */
drl_status drl_embedding_forward(const drl_device *dev, float *out, const int32_t *tokens, const float *table, int N,
                                 int C, int V);

/* dtable[tokens[n], :] += dout[n, :], summed per token in increasing n (no atomics: bit-identical on CPU and GPU).
 * scratch: drl_embedding_scratch_bytes(dev, N) bytes on dev. A bad token: an error on the CPU (dtable untouched),
 * skipped on the GPU. The GPU sorts (token, n) pairs with CUB's stable radix sort, then sums each (token, channel)
 * over its run in sorted order, starting from dtable's value, like the CPU. */
drl_status drl_embedding_backward(const drl_device *dev, float *dtable, const float *dout, const int32_t *tokens,
                                  int N, int C, int V, void *scratch);

/* Scratch bytes drl_embedding_backward needs on dev (0 on the CPU; -1 if CUB cannot size its sort). */
int64_t drl_embedding_scratch_bytes(const drl_device *dev, int N);

drl_status drl_embedding_forward_cpu(float *out, const int32_t *tokens, const float *table, int N, int C, int V);
drl_status drl_embedding_backward_cpu(float *dtable, const float *dout, const int32_t *tokens, int N, int C, int V);
drl_status drl_embedding_forward_cuda(const drl_device *dev, float *out, const int32_t *tokens, const float *table,
                                      int N, int C, int V);
drl_status drl_embedding_backward_cuda(const drl_device *dev, float *dtable, const float *dout,
                                       const int32_t *tokens, int N, int C, int V, void *scratch);
int64_t drl_embedding_scratch_bytes_cuda(int N);

#ifdef __cplusplus
}
#endif

/* ---- the math shared by both implementations ---- */

static inline DRL_HD int drl_embedding_token_ok(int32_t tok, int V) { return tok >= 0 && tok < V; }

/* One step of a token's gradient sum: plain adds in n order, nothing to fuse. */
static inline DRL_HD float drl_embedding_acc(float acc, float g) { return drl_fadd(acc, g); }

#endif /* DRL_EMBEDDING_H */
