/* Elementwise ops on flat float buffers. */
#ifndef DRL_ELEMENTWISE_H
#define DRL_ELEMENTWISE_H

#include <stdint.h>

#include "device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = a[i] + b[i]; out may alias a or b (the residual add). */
drl_status drl_add(const drl_device *dev, float *out, const float *a, const float *b, int64_t n);

/* y[i] += alpha * x[i]. */
drl_status drl_axpy(const drl_device *dev, float *y, float alpha, const float *x, int64_t n);

/* x[i] *= s. */
drl_status drl_scale(const drl_device *dev, float *x, float s, int64_t n);

drl_status drl_add_cuda(const drl_device *dev, float *out, const float *a, const float *b, int64_t n);
drl_status drl_axpy_cuda(const drl_device *dev, float *y, float alpha, const float *x, int64_t n);
drl_status drl_scale_cuda(const drl_device *dev, float *x, float s, int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* DRL_ELEMENTWISE_H */
