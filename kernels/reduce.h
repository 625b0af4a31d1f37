/* Deterministic reductions: fixed chunking, partial sums combined in chunk order, so the result does not depend on
 * the number of threads (CPU) or on scheduling (GPU). */
#ifndef DRL_REDUCE_H
#define DRL_REDUCE_H

#include <stdint.h>

#include "device.h"
#include "exp.h" /* drl_dadd, drl_dmul: explicitly rounded */
#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* *out (host) = sum of x[i]^2 over n elements, accumulated in double in the fixed layout below, so the CPU and the
 * GPU give the same bits for any thread count. scratch: drl_reduce_scratch_bytes(dev, n) on dev (may be NULL when
 * n == 0). */
drl_status drl_sum_squares(const drl_device *dev, double *out, const float *x, int64_t n, void *scratch);

/* Scratch bytes drl_sum_squares needs on dev. */
int64_t drl_reduce_scratch_bytes(const drl_device *dev, int64_t n);

/* The first half of drl_sum_squares: partials (host, drl_reduce_chunks(n) doubles) = the per-chunk sums of squares
 * of x[0, n). A buffer sharded at multiples of DRL_REDUCE_CHUNK gives each shard its slice of the whole buffer's
 * partials, so gathering them and calling drl_reduce_partials reproduces drl_sum_squares of the whole bit for bit. */
drl_status drl_sum_squares_partials(const drl_device *dev, double *partials, const float *x, int64_t n,
                                    void *scratch);

/* The second half: the fixed lane tree over count chunk partials (host). */
double drl_reduce_partials(const double *partials, int64_t count);

/* Chunks of DRL_REDUCE_CHUNK elements covering n. */
int64_t drl_reduce_chunks(int64_t n);

drl_status drl_sum_squares_cuda(const drl_device *dev, double *out, const float *x, int64_t n, void *scratch);
drl_status drl_sum_squares_partials_cuda(const drl_device *dev, double *partials, const float *x, int64_t n,
                                         void *scratch);

#ifdef __cplusplus
}
#endif

/* The layout of every deterministic sum (CPU and GPU alike): the input is cut into chunks of DRL_REDUCE_CHUNK
 * elements; inside a chunk, lane l < DRL_REDUCE_LANES sums elements l, l + LANES, l + 2 LANES, ... in that order;
 * the lanes are combined by the fixed tree acc[l] += acc[l + s] for s = LANES/2, ..., 1. The chunk partials are
 * summed the same way (lane l takes partials l, l + LANES, ... in order, then the tree). Squares of floats are
 * exact in double, so fused or separate multiply-adds would give the same bits; every add is explicitly rounded all
 * the same, so the kernel's PTX does not depend on nvcc's --fmad. */
#define DRL_REDUCE_CHUNK 4096
#define DRL_REDUCE_LANES 256

/* Lane l's sum of squares over chunk c of x[0, n). */
static inline DRL_HD double drl_sumsq_lane(const float *x, int64_t n, int64_t c, int l) {
  double s = 0.0;
  for (int64_t i = c * DRL_REDUCE_CHUNK + l; i < (c + 1) * DRL_REDUCE_CHUNK && i < n; i += DRL_REDUCE_LANES)
    s = drl_dadd(s, drl_dmul((double)x[i], (double)x[i]));
  return s;
}

/* Lane l's sum over the partials a[0, n). */
static inline DRL_HD double drl_sum_lane(const double *a, int64_t n, int l) {
  double s = 0.0;
  for (int64_t i = l; i < n; i += DRL_REDUCE_LANES) s = drl_dadd(s, a[i]);
  return s;
}

/* The lane tree, sequentially: the total ends in acc[0]. */
static inline DRL_HD double drl_reduce_tree(double acc[DRL_REDUCE_LANES]) {
  for (int s = DRL_REDUCE_LANES / 2; s > 0; s >>= 1)
    for (int l = 0; l < s; ++l) acc[l] = drl_dadd(acc[l], acc[l + s]);
  return acc[0];
}

#endif /* DRL_REDUCE_H */
