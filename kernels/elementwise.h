/* Elementwise ops on flat float buffers. Each element is rounded the same way on the CPU and the GPU: bit-identical. */
#ifndef DRL_ELEMENTWISE_H
#define DRL_ELEMENTWISE_H

#include <stdint.h>

#include "device.h"
#include "hd.h"
#include "philox.h" /* drl_fadd, drl_fmul: explicitly rounded, so nvcc cannot fuse them into an FMA */

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = a[i] + b[i]; out may alias a or b (the residual add). */
drl_status drl_add(const drl_device *dev, float *out, const float *a, const float *b, int64_t n);

/* y[i] += alpha * x[i]. */
drl_status drl_axpy(const drl_device *dev, float *y, float alpha, const float *x, int64_t n);

/* x[i] *= s. */
drl_status drl_scale(const drl_device *dev, float *x, float s, int64_t n);

drl_status drl_add_cpu(float *out, const float *a, const float *b, int64_t n);
drl_status drl_axpy_cpu(float *y, float alpha, const float *x, int64_t n);
drl_status drl_scale_cpu(float *x, float s, int64_t n);
drl_status drl_add_cuda(const drl_device *dev, float *out, const float *a, const float *b, int64_t n);
drl_status drl_axpy_cuda(const drl_device *dev, float *y, float alpha, const float *x, int64_t n);
drl_status drl_scale_cuda(const drl_device *dev, float *x, float s, int64_t n);

#ifdef __cplusplus
}
#endif

/* The per-element math of both implementations: every op rounded once, so CPU and GPU agree bit for bit. */
static inline DRL_HD float drl_add_elem(float a, float b) { return drl_fadd(a, b); }
static inline DRL_HD float drl_axpy_elem(float y, float alpha, float x) { return drl_fadd(y, drl_fmul(alpha, x)); }
static inline DRL_HD float drl_scale_elem(float x, float s) { return drl_fmul(x, s); }

#endif /* DRL_ELEMENTWISE_H */
