/* CPU SPSA: blocks of four flat indices in parallel (one Philox block each), so the split across threads cannot
 * change a bit; the math is spsa.h's, shared with the GPU. */
#include "spsa.h"

#include <math.h>
#include <stdint.h>

#include "nvtx.h"

/* Philox blocks (blocks x contributions) below which a parallel region costs more than it saves. */
#define MIN_PARALLEL_BLOCKS 2048

drl_status drl_spsa_perturb_cpu(float *out, const float *theta, int64_t n, uint64_t offset, drl_spsa_stream s,
                                uint32_t q, float coef) {
  if (n <= 0) return DRL_OK;
  int64_t first = (int64_t)(offset / 4), last = (int64_t)((offset + (uint64_t)n - 1) / 4);
#pragma omp parallel for schedule(static) if (last - first >= MIN_PARALLEL_BLOCKS)
  for (int64_t b = first; b <= last; ++b) {
    int lo, hi;
    drl_spsa_block_span((uint64_t)b, offset, n, &lo, &hi);
    float z[4];
    drl_spsa_z4(s, q, (uint64_t)b, z);
    int64_t base = (int64_t)(4 * (uint64_t)b - offset); /* index of word 0 (negative in a partial first block) */
    for (int k = lo; k < hi; ++k) out[base + k] = drl_spsa_update_elem(theta[base + k], coef, z[k]);
  }
  return DRL_OK;
}

drl_status drl_spsa_apply_cpu(float *theta, int64_t n, uint64_t offset, drl_spsa_stream s,
                              const drl_spsa_contrib *contribs, int count) {
  if (n <= 0 || count <= 0) return DRL_OK;
  int64_t first = (int64_t)(offset / 4), last = (int64_t)((offset + (uint64_t)n - 1) / 4);
#pragma omp parallel for schedule(static) if ((last - first + 1) * count >= MIN_PARALLEL_BLOCKS)
  for (int64_t b = first; b <= last; ++b) {
    int lo, hi;
    drl_spsa_block_span((uint64_t)b, offset, n, &lo, &hi);
    int64_t base = (int64_t)(4 * (uint64_t)b - offset);
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = lo; k < hi; ++k) t[k] = theta[base + k];
    /* Each element takes its contributions in the given order: that order is the contract. */
    for (int c = 0; c < count; ++c) {
      float z[4];
      drl_spsa_z4(s, contribs[c].q, (uint64_t)b, z);
      for (int k = lo; k < hi; ++k) t[k] = drl_spsa_update_elem(t[k], contribs[c].coef, z[k]);
    }
    for (int k = lo; k < hi; ++k) theta[base + k] = t[k];
  }
  return DRL_OK;
}

/* The checks both entry points share: a length, a flat range that fits in 64 bits, a known distribution. */
static drl_status check_range(const char *op, int64_t n, uint64_t offset, drl_spsa_stream s) {
  if (n < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: negative length %lld", op, (long long)n);
  if ((uint64_t)n > UINT64_MAX - offset)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: offset %llu + length %lld overflows the flat index", op,
                    (unsigned long long)offset, (long long)n);
  if (s.dist != DRL_SPSA_RADEMACHER && s.dist != DRL_SPSA_NORMAL)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: unknown z distribution %d (0 = rademacher, 1 = normal)", op,
                    (int)s.dist);
  return DRL_OK;
}

static drl_status check_contrib(const char *op, int c, uint32_t q, float coef) {
  if (q >= DRL_SPSA_MAX_Q)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: contribution %d: q %u must be below 2^28", op, c, q);
  if (!isfinite(coef))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: contribution %d: non-finite coef %g", op, c, (double)coef);
  return DRL_OK;
}

drl_status drl_spsa_perturb(const drl_device *dev, float *out, const float *theta, int64_t n, uint64_t offset,
                            drl_spsa_stream s, uint32_t q, float coef) {
  DRL_RANGE("spsa_perturb");
  DRL_TRY(check_range("drl_spsa_perturb", n, offset, s));
  DRL_TRY(check_contrib("drl_spsa_perturb", 0, q, coef));
  if (n == 0) return DRL_OK;
  if (!out || !theta)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_spsa_perturb: NULL buffer for %lld elements", (long long)n);
  uintptr_t o = (uintptr_t)out, t = (uintptr_t)theta, bytes = (uintptr_t)n * sizeof(float);
  if (o < t + bytes && t < o + bytes)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_spsa_perturb: out overlaps theta (the perturbation is functional)");
  DRL_DISPATCH_CUDA(dev, drl_spsa_perturb_cuda(dev, out, theta, n, offset, s, q, coef));
  return drl_spsa_perturb_cpu(out, theta, n, offset, s, q, coef);
}

drl_status drl_spsa_apply(const drl_device *dev, float *theta, int64_t n, uint64_t offset, drl_spsa_stream s,
                          const drl_spsa_contrib *contribs, int count) {
  DRL_RANGE("spsa_apply");
  DRL_TRY(check_range("drl_spsa_apply", n, offset, s));
  if (count < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_spsa_apply: negative count %d", count);
  if (count > 0 && !contribs)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_spsa_apply: NULL contributions for count %d", count);
  for (int c = 0; c < count; ++c) DRL_TRY(check_contrib("drl_spsa_apply", c, contribs[c].q, contribs[c].coef));
  if (n == 0 || count == 0) return DRL_OK;
  if (!theta) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_spsa_apply: NULL theta for %lld elements", (long long)n);
  DRL_DISPATCH_CUDA(dev, drl_spsa_apply_cuda(dev, theta, n, offset, s, contribs, count));
  return drl_spsa_apply_cpu(theta, n, offset, s, contribs, count);
}
