/* Causal multi-head attention with grouped-query heads, scale 1/sqrt(D).
 * q [B, T, H, D], k and v [B, T, KV, D] (the projections' outputs, unpermuted); query head h reads kv head
 * h / (H / KV). row_start[b] (NULL = all 0) marks left padding: keys j < row_start[b] are masked, and query rows
 * t < row_start[b] output zeros. */
#ifndef DRL_ATTENTION_H
#define DRL_ATTENTION_H

#include <stdint.h>

#include "device.h"
#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out [B, T, H, D]; att [B, H, T, T] receives the softmax probabilities (0 where masked) for the backward.
 * scratch: drl_attention_scratch_floats(dev, ...) floats on dev. */
drl_status drl_attention_forward(const drl_device *dev, float *out, float *att, const float *q, const float *k,
                                 const float *v, const int32_t *row_start, int B, int T, int H, int KV, int D,
                                 float *scratch);

/* dq [B,T,H,D], dk and dv [B,T,KV,D] (overwritten) from dout [B,T,H,D], with the forward's att. */
drl_status drl_attention_backward(const drl_device *dev, float *dq, float *dk, float *dv, const float *dout,
                                  const float *q, const float *k, const float *v, const float *att,
                                  const int32_t *row_start, int B, int T, int H, int KV, int D, float *scratch);

/* Scratch floats the forward and backward need on dev (the larger of the two). */
int64_t drl_attention_scratch_floats(const drl_device *dev, int B, int T, int H, int KV, int D);

drl_status drl_attention_forward_cuda(const drl_device *dev, float *out, float *att, const float *q, const float *k,
                                      const float *v, const int32_t *row_start, int B, int T, int H, int KV, int D,
                                      float *scratch);
drl_status drl_attention_backward_cuda(const drl_device *dev, float *dq, float *dk, float *dv, const float *dout,
                                       const float *q, const float *k, const float *v, const float *att,
                                       const int32_t *row_start, int B, int T, int H, int KV, int D, float *scratch);

#ifdef __cplusplus
}
#endif
#endif /* DRL_ATTENTION_H */
