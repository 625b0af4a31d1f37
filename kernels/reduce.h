/* Deterministic reductions: fixed chunking, partial sums combined in chunk order, so the result does not depend on
 * the number of threads (CPU) or on scheduling (GPU). */
#ifndef DRL_REDUCE_H
#define DRL_REDUCE_H

#include <stdint.h>

#include "device.h"
#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* *out (host) = sum of x[i]^2 over n elements, accumulated in double. scratch: drl_reduce_scratch_bytes(dev, n). */
drl_status drl_sum_squares(const drl_device *dev, double *out, const float *x, int64_t n, void *scratch);

/* Scratch bytes drl_sum_squares needs on dev. */
int64_t drl_reduce_scratch_bytes(const drl_device *dev, int64_t n);

drl_status drl_sum_squares_cuda(const drl_device *dev, double *out, const float *x, int64_t n, void *scratch);

#ifdef __cplusplus
}
#endif
#endif /* DRL_REDUCE_H */
