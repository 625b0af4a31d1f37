/* SPSA perturbation and ordered update. Contribution q (a 32-bit global sample index, q = uid * G + j, q < 2^28)
 * perturbs the flat parameter buffer along z_q, element i of the Philox stream (seed, step, drl_spsa_tag(q)) under
 * the Rademacher (default) or normal transform of philox.h. i is the flat index into the whole parameter buffer, so
 * a call on a slice passes offset = the slice's first flat index, and any split of the buffer gives the same bits.
 * One Philox block serves the four elements 4b .. 4b+3, so both backends work on blocks aligned to the flat index. */
#ifndef DRL_SPSA_H
#define DRL_SPSA_H

#include <stdint.h>

#include "device.h"
#include "hd.h"
#include "philox.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum drl_spsa_dist { DRL_SPSA_RADEMACHER = 0, DRL_SPSA_NORMAL = 1 } drl_spsa_dist;

/* The step's z streams: run seed, step, distribution. */
typedef struct drl_spsa_stream {
  uint64_t seed;
  uint32_t step;
  drl_spsa_dist dist;
} drl_spsa_stream;

/* One contribution of an update: coef * z_q. */
typedef struct drl_spsa_contrib {
  uint32_t q;
  float coef;
} drl_spsa_contrib;

/* q must be below this: q >> 12 fills the 16 uid bits of the tag, q & 0xFFF its 12 sample bits. */
#define DRL_SPSA_MAX_Q (1u << 28)

/* Contributions one CUDA launch applies (passed by value, so the update needs no device allocation). */
#define DRL_SPSA_BATCH 256

/* out[k] = theta[k] + coef * z_q(offset + k), k < n: the functional perturbation (theta is only read; out must not
 * overlap theta). coef must be finite. */
drl_status drl_spsa_perturb(const drl_device *dev, float *out, const float *theta, int64_t n, uint64_t offset,
                            drl_spsa_stream s, uint32_t q, float coef);

/* theta[k] = theta[k] + coef_c * z_{q_c}(offset + k) for c = 0 .. count-1 in that order, one rounding per
 * contribution (the update every rank applies identically); contribs is a HOST array of finite coefs; count 0 is a
 * no-op. */
drl_status drl_spsa_apply(const drl_device *dev, float *theta, int64_t n, uint64_t offset, drl_spsa_stream s,
                          const drl_spsa_contrib *contribs, int count);

drl_status drl_spsa_perturb_cpu(float *out, const float *theta, int64_t n, uint64_t offset, drl_spsa_stream s,
                                uint32_t q, float coef);
drl_status drl_spsa_apply_cpu(float *theta, int64_t n, uint64_t offset, drl_spsa_stream s,
                              const drl_spsa_contrib *contribs, int count);
drl_status drl_spsa_perturb_cuda(const drl_device *dev, float *out, const float *theta, int64_t n, uint64_t offset,
                                 drl_spsa_stream s, uint32_t q, float coef);
drl_status drl_spsa_apply_cuda(const drl_device *dev, float *theta, int64_t n, uint64_t offset, drl_spsa_stream s,
                               const drl_spsa_contrib *contribs, int count);

#ifdef __cplusplus
}
#endif

/* The Philox tag of contribution q's z stream. */
static inline DRL_HD uint32_t drl_spsa_tag(uint32_t q) { return drl_rng_tag(DRL_RNG_SPSA, q >> 12, q & 0xFFFu); }

/* z_q at flat index i: one element at a time (the reference; the kernels use drl_spsa_z4). */
static inline DRL_HD float drl_spsa_z(drl_spsa_stream s, uint32_t q, uint64_t i) {
  if (s.dist == DRL_SPSA_NORMAL) return drl_rng_normal(s.seed, s.step, drl_spsa_tag(q), i);
  return drl_rng_rademacher(s.seed, s.step, drl_spsa_tag(q), i);
}

/* z_q at flat indices 4b .. 4b+3 from one Philox block: the same values drl_spsa_z gives one by one. */
static inline DRL_HD void drl_spsa_z4(drl_spsa_stream s, uint32_t q, uint64_t b, float z[4]) {
  drl_philox_block r = drl_rng_block(s.seed, s.step, drl_spsa_tag(q), b);
  if (s.dist == DRL_SPSA_NORMAL) {
    drl_box_muller(r.v[0], r.v[1], &z[0], &z[1]);
    drl_box_muller(r.v[2], r.v[3], &z[2], &z[3]);
  } else {
    for (int k = 0; k < 4; ++k) z[k] = drl_u32_to_rademacher(r.v[k]);
  }
}

/* One contribution to one element: theta + coef * z, the product and the sum each rounded once (for Rademacher the
 * product is exact; it stays explicit so nvcc cannot fuse it into an FMA). */
static inline DRL_HD float drl_spsa_update_elem(float theta, float coef, float z) {
  return drl_fadd(theta, drl_fmul(coef, z));
}

/* The words [*lo, *hi) of block b that lie in the flat range [offset, offset + n). */
static inline DRL_HD void drl_spsa_block_span(uint64_t b, uint64_t offset, int64_t n, int *lo, int *hi) {
  uint64_t start = 4 * b, end = offset + (uint64_t)n;
  *lo = offset > start ? (int)(offset - start) : 0;
  *hi = end < start + 4 ? (int)(end - start) : 4;
}

#endif /* DRL_SPSA_H */
