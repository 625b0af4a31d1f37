/* Causal multi-head attention with grouped-query heads, scale 1/sqrt(D).
 * q [B, T, H, D], k and v [B, T, KV, D] (the projections' outputs, unpermuted); query head h reads kv head
 * h / (H / KV). row_start[b] (NULL = all 0; int32 on dev, 0 <= row_start[b] <= T) marks left padding: keys
 * j < row_start[b] are masked, and query rows t < row_start[b] output zeros.
 * Outputs must not alias inputs. Every output element is written (att and the gradients need no zeroing first). */
#ifndef DRL_ATTENTION_H
#define DRL_ATTENTION_H

#include <math.h>
#include <stdint.h>

#include "device.h"
#include "hd.h"
#include "philox.h"

/* The scaled score q . k / sqrt(D) of one query and one key: eight partial sums over d (lane l takes d = l mod 8),
 * then a fixed tree. Every step is explicitly rounded, so the CPU training forward, the CPU decode and the CUDA
 * decode give the same bits; the eight independent chains also let the compiler vectorise what a single running sum
 * could not. */
static inline DRL_HD float drl_attention_score(const float *q, const float *k, int D, float scale) {
  float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  int d = 0;
  for (; d + 8 <= D; d += 8)
    for (int l = 0; l < 8; ++l) acc[l] = drl_fadd(acc[l], drl_fmul(q[d + l], k[d + l]));
  for (int l = 0; d + l < D; ++l) acc[l] = drl_fadd(acc[l], drl_fmul(q[d + l], k[d + l]));
  float s = drl_fadd(drl_fadd(drl_fadd(acc[0], acc[4]), drl_fadd(acc[2], acc[6])),
                     drl_fadd(drl_fadd(acc[1], acc[5]), drl_fadd(acc[3], acc[7])));
  return drl_fmul(scale, s);
}

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

/* Scratch floats the forward and backward need on dev (the larger of the two): CPU B*KV*T (backward only; the
 * forward accepts NULL), CUDA B*T*D*(2H + 3KV) + B*H*T*T. 0 for invalid sizes. */
int64_t drl_attention_scratch_floats(const drl_device *dev, int B, int T, int H, int KV, int D);

drl_status drl_attention_forward_cpu(float *out, float *att, const float *q, const float *k, const float *v,
                                     const int32_t *row_start, int B, int T, int H, int KV, int D);
drl_status drl_attention_backward_cpu(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                      const float *k, const float *v, const float *att, const int32_t *row_start,
                                      int B, int T, int H, int KV, int D, float *scratch);

drl_status drl_attention_forward_cuda(const drl_device *dev, float *out, float *att, const float *q, const float *k,
                                      const float *v, const int32_t *row_start, int B, int T, int H, int KV, int D,
                                      float *scratch);
drl_status drl_attention_backward_cuda(const drl_device *dev, float *dq, float *dk, float *dv, const float *dout,
                                       const float *q, const float *k, const float *v, const float *att,
                                       const int32_t *row_start, int B, int T, int H, int KV, int D, float *scratch);

#ifdef __cplusplus
}
#endif

/* ---- per-row math shared by the CPU loops, the CUDA kernels and (later) the KV-cache decode kernel ----
 * A row is one query's scores against keys 0..n-1; masking is an explicit key range [lo, hi). */

/* 1/sqrt(D), rounded once from double, the same number on every backend. */
static inline DRL_HD float drl_attention_scale(int D) { return (float)(1.0 / sqrt((double)D)); }

/* Keys [*lo, *hi) that the query at position t sees: causal (j <= t) and after the left padding (j >= row_start).
 * Empty (lo == hi) for a padded query (t < row_start). Decoding passes the query's absolute position in the cache. */
static inline DRL_HD void drl_attention_key_range(int t, int row_start, int *lo, int *hi) {
  int s = row_start > 0 ? row_start : 0; /* clamped so a bad value can never index before the row */
  *lo = s;
  *hi = t >= s ? t + 1 : s;
}

/* Unnormalised softmax weight of score x under the row maximum mx. */
static inline DRL_HD float drl_softmax_weight(float x, float mx) { return expf(x - mx); }

/* One entry of the softmax backward: d score = p * (dp - sum_k p_k dp_k), with dot = that sum. */
static inline DRL_HD float drl_softmax_backward_elem(float p, float dp, float dot) { return p * (dp - dot); }

/* row[0, n): scores in, probabilities out; softmax over [lo, hi), exact 0 elsewhere (an empty range: all 0).
 * Probabilities are weight * (1 / sum), the form the GPU kernel uses too. */
static inline DRL_HD void drl_softmax_masked_row(float *row, int n, int lo, int hi) {
  float mx = lo < hi ? row[lo] : 0.0f, sum = 0.0f;
  for (int j = lo + 1; j < hi; ++j) mx = fmaxf(mx, row[j]);
  for (int j = lo; j < hi; ++j) {
    row[j] = drl_softmax_weight(row[j], mx);
    sum += row[j];
  }
  float inv = lo < hi ? 1.0f / sum : 0.0f;
  for (int j = 0; j < n; ++j) row[j] = (j >= lo && j < hi) ? row[j] * inv : 0.0f;
}

/* Softmax backward over [lo, hi) of a row of n: dpre[j] from probabilities p and their gradient dp, 0 outside the
 * range. dpre may alias dp. */
static inline DRL_HD void drl_softmax_backward_masked_row(const float *p, const float *dp, float *dpre, int n, int lo,
                                                          int hi) {
  float dot = 0.0f;
  for (int j = lo; j < hi; ++j) dot += p[j] * dp[j];
  for (int j = 0; j < n; ++j) dpre[j] = (j >= lo && j < hi) ? drl_softmax_backward_elem(p[j], dp[j], dot) : 0.0f;
}

#endif /* DRL_ATTENTION_H */
