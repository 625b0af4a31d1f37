/* SiLU activation of the flow velocity MLP: silu(x) = x sigmoid(x), on the engine-owned sigmoid of exp.h, so the CPU
 * and the GPU agree bit for bit (swiglu.h's SiLU uses libm expf and agrees only to a few ulp). */
#ifndef DRL_SILU_H
#define DRL_SILU_H

#include <stdint.h>

#include "device.h"
#include "exp.h"
#include "hd.h"
#include "philox.h" /* drl_fadd, drl_fmul: explicitly rounded */

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = x[i] * sigmoid(x[i]) with drl_sigmoid_exact (bit-identical on CPU and GPU); out may alias x. */
drl_status drl_silu_forward(const drl_device *dev, float *out, const float *x, int64_t n);

/* dx[i] = dout[i] * (s + x s (1 - s)), s = sigmoid(x[i]) (overwrites dx; dx may alias dout). */
drl_status drl_silu_backward(const drl_device *dev, float *dx, const float *dout, const float *x, int64_t n);

drl_status drl_silu_forward_cpu(float *out, const float *x, int64_t n);
drl_status drl_silu_backward_cpu(float *dx, const float *dout, const float *x, int64_t n);
drl_status drl_silu_forward_cuda(const drl_device *dev, float *out, const float *x, int64_t n);
drl_status drl_silu_backward_cuda(const drl_device *dev, float *dx, const float *dout, const float *x, int64_t n);

#ifdef __cplusplus
}
#endif

/* ---- the per-element math of both implementations, each op rounded once ----
 * Within 4 ulp of the exact SiLU for x >= -80. Below x = -88.7 the clamp inside drl_expf holds the sigmoid at ~3e-39,
 * so silu(x) is about -3e-39 |x| instead of ~0: a negligible absolute error, never NaN. */

static inline DRL_HD float drl_silu_elem(float x) { return drl_fmul(x, drl_sigmoid_exact(x)); }

/* dout * d silu / dx = dout * (s + (x s) (1 - s)). */
static inline DRL_HD float drl_silu_backward_elem(float dout, float x) {
  float s = drl_sigmoid_exact(x);
  return drl_fmul(dout, drl_fadd(s, drl_fmul(drl_fmul(x, s), drl_fadd(1.0f, -s))));
}

#endif /* DRL_SILU_H */
