/* CPU rank_sum: one tree per element, elements in parallel (each element's sum is independent of the split). */
#include "rank_sum.h"

#include <stdint.h>

#include "nvtx.h"

drl_status drl_rank_sum_cpu(float *out, const float *in, int count, int64_t n) {
#pragma omp parallel for schedule(static) if (n > DRL_OMP_MIN_MATH)
  for (int64_t k = 0; k < n; ++k) out[k] = drl_tree_sum_elem(in + k, n, count);
  return DRL_OK;
}

drl_status drl_rank_sum(const drl_device *dev, float *out, const float *in, int count, int64_t n) {
  DRL_RANGE("rank_sum");
  if (count < 1 || count > DRL_TREE_SUM_MAX_COUNT)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_rank_sum: count %d outside 1..%d", count, DRL_TREE_SUM_MAX_COUNT);
  if (n < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_rank_sum: negative length %lld", (long long)n);
  if (n == 0) return DRL_OK;
  if (!out || !in) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_rank_sum: NULL buffer for %lld elements", (long long)n);
  if (n > INT64_MAX / count / (int64_t)sizeof(float))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_rank_sum: %d pieces of %lld floats overflow", count, (long long)n);
  /* Addresses compared as integers (the buffers may be unrelated objects, or device pointers). */
  uintptr_t o = (uintptr_t)out, i = (uintptr_t)in;
  uintptr_t o_end = o + (uintptr_t)n * sizeof(float), i_end = i + (uintptr_t)n * (uintptr_t)count * sizeof(float);
  if (o != i && o < i_end && i < o_end)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_rank_sum: out overlaps in without being exactly in (piece 0)");
  DRL_DISPATCH_CUDA(dev, drl_rank_sum_cuda(dev, out, in, count, n));
  return drl_rank_sum_cpu(out, in, count, n);
}
