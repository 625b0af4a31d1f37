/* Token embedding lookup and its gradient. */
#ifndef DRL_EMBEDDING_H
#define DRL_EMBEDDING_H

#include <stdint.h>

#include "device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[n, :] = table[tokens[n], :] for n < N; every token must be in [0, V) (checked on the CPU). */
drl_status drl_embedding_forward(const drl_device *dev, float *out, const int32_t *tokens, const float *table, int N,
                                 int C, int V);

/* dtable[tokens[n], :] += dout[n, :], summed per token in increasing n (no atomics: bit-identical on CPU and GPU).
 * scratch: drl_embedding_scratch_bytes(dev, N) bytes on dev. */
drl_status drl_embedding_backward(const drl_device *dev, float *dtable, const float *dout, const int32_t *tokens,
                                  int N, int C, int V, void *scratch);

/* Scratch bytes drl_embedding_backward needs on dev. */
int64_t drl_embedding_scratch_bytes(const drl_device *dev, int N);

drl_status drl_embedding_forward_cuda(const drl_device *dev, float *out, const int32_t *tokens, const float *table,
                                      int N, int C, int V);
drl_status drl_embedding_backward_cuda(const drl_device *dev, float *dtable, const float *dout,
                                       const int32_t *tokens, int N, int C, int V, void *scratch);

#ifdef __cplusplus
}
#endif
#endif /* DRL_EMBEDDING_H */
