/* CPU deterministic reductions in the layout of reduce.h: chunks in parallel into scratch, then one final pass. */
#include "reduce.h"

#include <string.h>

#include "nvtx.h"

static int64_t num_chunks(int64_t n) { return (n + DRL_REDUCE_CHUNK - 1) / DRL_REDUCE_CHUNK; }

/* A full chunk: lane l's running sum gets elements l, l + LANES, ... in order, as in drl_sumsq_lane, with the lanes
 * as the inner loop so the compiler can vectorise across them. */
static double full_chunk(const float *x) {
  double acc[DRL_REDUCE_LANES];
  memset(acc, 0, sizeof acc);
  for (int k = 0; k < DRL_REDUCE_CHUNK; k += DRL_REDUCE_LANES)
    for (int l = 0; l < DRL_REDUCE_LANES; ++l) acc[l] += (double)x[k + l] * (double)x[k + l];
  return drl_reduce_tree(acc);
}

static void partials_cpu(double *partial, const float *x, int64_t n) {
  int64_t chunks = num_chunks(n);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    if ((c + 1) * DRL_REDUCE_CHUNK <= n) {
      partial[c] = full_chunk(x + c * DRL_REDUCE_CHUNK);
    } else {
      double acc[DRL_REDUCE_LANES];
      for (int l = 0; l < DRL_REDUCE_LANES; ++l) acc[l] = drl_sumsq_lane(x, n, c, l);
      partial[c] = drl_reduce_tree(acc);
    }
  }
}

double drl_reduce_partials(const double *partials, int64_t count) {
  double acc[DRL_REDUCE_LANES];
  for (int l = 0; l < DRL_REDUCE_LANES; ++l) acc[l] = drl_sum_lane(partials, count, l);
  return drl_reduce_tree(acc);
}

int64_t drl_reduce_chunks(int64_t n) { return n > 0 ? num_chunks(n) : 0; }

int64_t drl_reduce_scratch_bytes(const drl_device *dev, int64_t n) {
  (void)dev; /* the same on both backends: the chunk partials and the result */
  return n > 0 ? (num_chunks(n) + 1) * (int64_t)sizeof(double) : 0;
}

drl_status drl_sum_squares(const drl_device *dev, double *out, const float *x, int64_t n, void *scratch) {
  DRL_RANGE("sum_squares");
  if (!out) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_sum_squares: NULL output");
  if (n < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_sum_squares: negative size %lld", (long long)n);
  if (n == 0) {
    *out = 0.0;
    return DRL_OK;
  }
  if (!x || !scratch) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_sum_squares: NULL input or scratch");
  DRL_DISPATCH_CUDA(dev, drl_sum_squares_cuda(dev, out, x, n, scratch));
  partials_cpu((double *)scratch, x, n);
  *out = drl_reduce_partials((const double *)scratch, num_chunks(n));
  return DRL_OK;
}

drl_status drl_sum_squares_partials(const drl_device *dev, double *partials, const float *x, int64_t n,
                                    void *scratch) {
  DRL_RANGE("sum_squares");
  if (n < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_sum_squares_partials: negative size %lld", (long long)n);
  if (n == 0) return DRL_OK;
  if (!x || !partials || !scratch)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_sum_squares_partials: NULL input, output or scratch");
  DRL_DISPATCH_CUDA(dev, drl_sum_squares_partials_cuda(dev, partials, x, n, scratch));
  partials_cpu(partials, x, n);
  return DRL_OK;
}
