/* The fused LM head: logits = x W^T / temperature, then per row the log-probability of the target token and the
 * full-vocabulary entropy H = LSE - sum softmax * logit, in one pass over the vocabulary. Rows are processed in
 * chunks, so at most chunk_rows x V logits exist at once: never a [B, T, V] buffer. */
#ifndef DRL_LM_HEAD_H
#define DRL_LM_HEAD_H

#include <stdint.h>

#include "device.h"
#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* For rows n < N of x [N, C], with W [V, C]: logprob[n] = log softmax(logits)[targets[n]] (0 when targets[n] < 0)
 * and entropy[n] (skipped when entropy is NULL). scratch: drl_lm_head_scratch_floats(dev, chunk_rows, V). */
drl_status drl_lm_head_forward(const drl_device *dev, float *logprob, float *entropy, const float *x, const float *W,
                               const int32_t *targets, int N, int C, int V, float temperature, float *scratch,
                               int chunk_rows);

/* Backward of L = sum_n dlogprob[n] * logprob[n] (rows with targets[n] < 0 contribute nothing): dx [N, C]
 * (overwritten) and dW [V, C] (+=). Recomputes the logits chunk by chunk. */
drl_status drl_lm_head_backward(const drl_device *dev, float *dx, float *dW, const float *dlogprob, const float *x,
                                const float *W, const int32_t *targets, int N, int C, int V, float temperature,
                                float *scratch, int chunk_rows);

/* Scratch floats the forward and backward need on dev for chunks of chunk_rows rows. */
int64_t drl_lm_head_scratch_floats(const drl_device *dev, int chunk_rows, int V);

drl_status drl_lm_head_forward_cuda(const drl_device *dev, float *logprob, float *entropy, const float *x,
                                    const float *W, const int32_t *targets, int N, int C, int V, float temperature,
                                    float *scratch, int chunk_rows);
drl_status drl_lm_head_backward_cuda(const drl_device *dev, float *dx, float *dW, const float *dlogprob,
                                     const float *x, const float *W, const int32_t *targets, int N, int C, int V,
                                     float temperature, float *scratch, int chunk_rows);

#ifdef __cplusplus
}
#endif
#endif /* DRL_LM_HEAD_H */
