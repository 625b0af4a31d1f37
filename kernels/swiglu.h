/* SwiGLU activation of the feed-forward block: out = silu(gate) * up, silu(g) = g * sigmoid(g). */
#ifndef DRL_SWIGLU_H
#define DRL_SWIGLU_H

#include <stdint.h>

#include "device.h"
#include "hd.h"

#ifndef __CUDACC__
#include <math.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = silu(gate[i]) * up[i]. */
drl_status drl_swiglu_forward(const drl_device *dev, float *out, const float *gate, const float *up, int64_t n);

/* dgate[i], dup[i] (overwritten) from dout[i]; they may alias gate, up or dout (each element is read first). */
drl_status drl_swiglu_backward(const drl_device *dev, float *dgate, float *dup, const float *dout, const float *gate,
                               const float *up, int64_t n);

drl_status drl_swiglu_forward_cpu(float *out, const float *gate, const float *up, int64_t n);
drl_status drl_swiglu_backward_cpu(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                   int64_t n);
drl_status drl_swiglu_forward_cuda(const drl_device *dev, float *out, const float *gate, const float *up, int64_t n);
drl_status drl_swiglu_backward_cuda(const drl_device *dev, float *dgate, float *dup, const float *dout,
                                    const float *gate, const float *up, int64_t n);

#ifdef __cplusplus
}
#endif

/* The per-element math of both implementations. expf differs between glibc and CUDA by an ulp or two, so CPU and
 * GPU agree to a few ulp, not bit for bit. For g << 0, expf(-g) = inf gives sigmoid 0 and silu -0: no NaN. */
static inline DRL_HD float drl_sigmoidf(float g) { return 1.0f / (1.0f + expf(-g)); }

static inline DRL_HD float drl_swiglu_elem(float gate, float up) { return gate * drl_sigmoidf(gate) * up; }

/* d silu(g)/dg = s (1 + g (1 - s)) with s = sigmoid(g). */
static inline DRL_HD void drl_swiglu_backward_elem(float dout, float gate, float up, float *dgate, float *dup) {
  float s = drl_sigmoidf(gate);
  float silu = gate * s;
  *dup = dout * silu;
  *dgate = dout * up * (s * (1.0f + gate * (1.0f - s)));
}

#endif /* DRL_SWIGLU_H */
