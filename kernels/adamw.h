/* AdamW with decoupled weight decay (Loshchilov & Hutter), fp32 state. */
#ifndef DRL_ADAMW_H
#define DRL_ADAMW_H

#include <stdint.h>

#include "device.h"
#include "hd.h"
#include "layout.h"
#include "philox.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_adamw_hparams {
  float lr, beta1, beta2, eps, weight_decay;
  int step;          /* 1-based, for the bias corrections */
  float grad_scale;  /* gradients are multiplied by this first (clipping, loss scaling) */
} drl_adamw_hparams;

/* One step over n parameters: g = grads*grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * params -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * params). */
drl_status drl_adamw(const drl_device *dev, float *params, const float *grads, float *m, float *v, int64_t n,
                     drl_adamw_hparams hp);

/* drl_adamw over the elements [lo, hi) of a flat buffer laid out by layout, tensor by tensor, with weight decay only
 * on tensors whose decay flag is set; m and v hold just those elements (m[0] is element lo), so a ZeRO shard of the
 * optimizer state steps its part of the parameters. */
drl_status drl_adamw_layout(const drl_device *dev, const drl_layout *layout, float *params, const float *grads,
                            float *m, float *v, int64_t lo, int64_t hi, drl_adamw_hparams hp);

drl_status drl_adamw_cuda(const drl_device *dev, float *params, const float *grads, float *m, float *v, int64_t n,
                          drl_adamw_hparams hp);

/* The per-step constants every element uses, rounded to float once on the host: (1 - beta) and the bias corrections
 * 1 - beta^step are computed in double, so the CPU and the GPU start from the same bits. */
typedef struct drl_adamw_coef {
  float lr, beta1, beta2, one_minus_beta1, one_minus_beta2, bias1, bias2, eps, weight_decay, grad_scale;
} drl_adamw_coef;

drl_adamw_coef drl_adamw_coefficients(drl_adamw_hparams hp);

#ifdef __cplusplus
}
#endif

/* The factor that clips a gradient of norm `norm` to at most `clip` (clip <= 0: no clipping). */
static inline float drl_clip_scale(float norm, float clip) { return clip > 0.0f && norm > clip ? clip / norm : 1.0f; }

/* Correctly rounded division; drl_fmul, drl_fadd and drl_fsqrt come from philox.h. */
static inline DRL_HD float drl_adamw_fdiv(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b; /* host code is built with -ffp-contract=off */
#endif
}

/* One element of the update, every operation explicitly rounded, so CPU and GPU agree bit for bit:
 *   g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g g;
 *   p = p - lr * ((m / bias1) / (sqrt(v / bias2) + eps) + weight_decay * p). */
static inline DRL_HD void drl_adamw_element(float *p, float *m, float *v, float grad, drl_adamw_coef c) {
  float g = drl_fmul(grad, c.grad_scale);
  float mi = drl_fadd(drl_fmul(c.beta1, *m), drl_fmul(c.one_minus_beta1, g));
  float vi = drl_fadd(drl_fmul(c.beta2, *v), drl_fmul(c.one_minus_beta2, drl_fmul(g, g)));
  float m_hat = drl_adamw_fdiv(mi, c.bias1);
  float v_hat = drl_adamw_fdiv(vi, c.bias2);
  float step = drl_fadd(drl_adamw_fdiv(m_hat, drl_fadd(drl_fsqrt(v_hat), c.eps)), drl_fmul(c.weight_decay, *p));
  *p = drl_fadd(*p, -drl_fmul(c.lr, step));
  *m = mi;
  *v = vi;
}

#endif /* DRL_ADAMW_H */
