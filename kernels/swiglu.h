/* SwiGLU activation of the feed-forward block: out = silu(gate) * up, silu(g) = g * sigmoid(g). */
#ifndef DRL_SWIGLU_H
#define DRL_SWIGLU_H

#include <stdint.h>

#include "device.h"
#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = silu(gate[i]) * up[i]. */
drl_status drl_swiglu_forward(const drl_device *dev, float *out, const float *gate, const float *up, int64_t n);

/* dgate[i], dup[i] (overwritten) from dout[i]. */
drl_status drl_swiglu_backward(const drl_device *dev, float *dgate, float *dup, const float *dout, const float *gate,
                               const float *up, int64_t n);

drl_status drl_swiglu_forward_cuda(const drl_device *dev, float *out, const float *gate, const float *up, int64_t n);
drl_status drl_swiglu_backward_cuda(const drl_device *dev, float *dgate, float *dup, const float *dout,
                                    const float *gate, const float *up, int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* DRL_SWIGLU_H */
