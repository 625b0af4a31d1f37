/* RMSNorm over the last dimension: out = inp * rstd * weight, rstd = 1 / sqrt(mean(inp^2) + eps). */
#ifndef DRL_RMSNORM_H
#define DRL_RMSNORM_H

#include <stdint.h>

#include "device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* For each of N rows of C: out (may not alias inp) and rstd[row] (saved for the backward). */
drl_status drl_rmsnorm_forward(const drl_device *dev, float *out, float *rstd, const float *inp, const float *weight,
                               int N, int C, float eps);

/* dinp[N,C] += and dweight[C] += the gradients from dout. The dweight sum over rows is deterministic (fixed order on
 * the CPU for any thread count; fixed two-stage tree on the GPU). scratch: drl_rmsnorm_scratch_floats(N, C). */
drl_status drl_rmsnorm_backward(const drl_device *dev, float *dinp, float *dweight, const float *dout,
                                const float *inp, const float *weight, const float *rstd, int N, int C,
                                float *scratch);

/* Scratch floats drl_rmsnorm_backward needs on dev. */
int64_t drl_rmsnorm_scratch_floats(const drl_device *dev, int N, int C);

drl_status drl_rmsnorm_forward_cuda(const drl_device *dev, float *out, float *rstd, const float *inp,
                                    const float *weight, int N, int C, float eps);
drl_status drl_rmsnorm_backward_cuda(const drl_device *dev, float *dinp, float *dweight, const float *dout,
                                     const float *inp, const float *weight, const float *rstd, int N, int C,
                                     float *scratch);

#ifdef __cplusplus
}
#endif
#endif /* DRL_RMSNORM_H */
