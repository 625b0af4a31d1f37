/* The fused LM head: logits = x W^T / temperature, then per row the log-probability of the target token and the
 * full-vocabulary entropy H = LSE - sum softmax * logit, in one pass over the vocabulary. Rows are processed in
 * chunks, so at most chunk_rows x V logits exist at once: never a [B, T, V] buffer. */
#ifndef DRL_LM_HEAD_H
#define DRL_LM_HEAD_H

#include <stdint.h>

#include "device.h"
#include "hd.h"

#ifndef __CUDACC__
#include <math.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* For rows n < N of x [N, C], with W [V, C] and logits = (x W^T) * (1/temperature): logprob[n] =
 * log softmax(logits)[targets[n]] (0 when targets[n] < 0; skipped with targets when logprob is NULL) and entropy[n]
 * (skipped when entropy is NULL). targets[n] >= V is an error on the CPU and a NaN row on the GPU.
 * scratch: drl_lm_head_scratch_floats(dev, chunk_rows, V). */
drl_status drl_lm_head_forward(const drl_device *dev, float *logprob, float *entropy, const float *x, const float *W,
                               const int32_t *targets, int N, int C, int V, float temperature, float *scratch,
                               int chunk_rows);

/* Backward of L = sum_n dlogprob[n] * logprob[n] (rows with targets[n] < 0 contribute nothing): dx [N, C]
 * (overwritten; skipped when NULL) and dW [V, C] (+=; skipped when NULL). Recomputes the logits chunk by chunk. */
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

/* ---- the row math, shared by the CPU loop and the CUDA block-per-row kernel ---- */

/* Online log-sum-exp of one row: m = running max, s = sum e^(z-m), t = sum e^(z-m) (z-m); s == 0 means empty.
 * Keeping t relative to m makes H = log s - t/s a sum of two non-negative terms: no cancellation at large logits. */
typedef struct drl_lse {
  float m, s, t;
} drl_lse;

static inline DRL_HD drl_lse drl_lse_empty(void) {
  drl_lse a = {0.0f, 0.0f, 0.0f};
  return a;
}

/* Adds logit z; one exp per element (the rescale when the max moves replaces the element's own exp). */
static inline DRL_HD void drl_lse_push(drl_lse *a, float z) {
  if (a->s == 0.0f) {
    a->m = z;
    a->s = 1.0f;
    a->t = 0.0f;
    return;
  }
  float d = z - a->m;
  if (d > 0.0f) { /* new max: old terms scale by e^-d and their offsets shift by -d */
    float r = expf(-d);
    a->t = r * (a->t - d * a->s);
    a->s = a->s * r + 1.0f;
    a->m = z;
  } else {
    float e = expf(d);
    a->s = a->s + e;
    a->t = a->t + e * d;
  }
}

/* Combines two partial states; the order of the arguments is part of a deterministic reduction tree. */
static inline DRL_HD drl_lse drl_lse_merge(drl_lse a, drl_lse b) {
  if (b.s == 0.0f) return a;
  if (a.s == 0.0f) return b;
  if (b.m > a.m) {
    drl_lse c = a;
    a = b;
    b = c;
  }
  float d = b.m - a.m; /* <= 0 */
  float r = expf(d);
  drl_lse o;
  o.m = a.m;
  o.s = a.s + r * b.s;
  o.t = a.t + r * (b.t + d * b.s);
  return o;
}

/* The layout of a row's reduction, the same on both backends: lane l < lanes pushes logits l, l + lanes, ... in order;
 * then, in groups of 32 lanes, a[l] = merge(a[l], a[l + off]) for off = 16, 8, 4, 2, 1 (a warp's shuffle tree);
 * then the group results (empty past the last group) go through the same 32-lane tree. lanes is a power of two,
 * 32..512, so that each lane holds about 8 logits or more. */
static inline DRL_HD int drl_lm_head_lanes(int V) {
  int t = 32;
  while (t < 512 && t * 8 < V) t *= 2;
  return t;
}

/* log softmax of logit z_target in the row summarised by a. */
static inline DRL_HD float drl_lse_logprob(drl_lse a, float z_target) { return (z_target - a.m) - logf(a.s); }

/* Entropy of the row's softmax: LSE - sum p z = log s - t/s. */
static inline DRL_HD float drl_lse_entropy(drl_lse a) { return logf(a.s) - a.t / a.s; }

/* d L / d (x W^T) for one logit z: g * (onehot - softmax(z)), g = dlogprob / temperature, log_s = logf(a.s). */
static inline DRL_HD float drl_lm_head_dlogit(float z, float m, float log_s, int is_target, float g) {
  float p = expf((z - m) - log_s);
  return g * ((is_target ? 1.0f : 0.0f) - p);
}

#endif /* DRL_LM_HEAD_H */
