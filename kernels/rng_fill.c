#include "rng_fill.h"

#include "nvtx.h"

drl_status drl_rng_fill_cpu(void *out, uint64_t n, drl_rng_stream s, uint64_t offset, drl_rng_dist dist) {
  if (n == 0) return DRL_OK;
  uint64_t first = offset / 4, last = (offset + n - 1) / 4;
  /* Each element is addressed by its index, so the split across threads cannot change a bit. */
#pragma omp parallel for schedule(static)
  for (int64_t q = (int64_t)first; q <= (int64_t)last; ++q) drl_rng_fill_store(s, (uint64_t)q, dist, offset, n, out);
  return DRL_OK;
}

drl_status drl_rng_fill(const drl_device *dev, void *out, uint64_t n, drl_rng_stream s, uint64_t offset,
                        drl_rng_dist dist) {
  DRL_RANGE("rng_fill");
  if (n && !out) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_rng_fill: NULL output for %llu elements",
                                 (unsigned long long)n);
  if ((unsigned)dist > DRL_DIST_NORMAL) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_rng_fill: unknown dist %d", (int)dist);
  DRL_DISPATCH_CUDA(dev, drl_rng_fill_cuda(dev, out, n, s, offset, dist));
  return drl_rng_fill_cpu(out, n, s, offset, dist);
}
