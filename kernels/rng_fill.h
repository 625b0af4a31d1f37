/* rng_fill: writes elements [offset, offset+n) of a Philox stream (see philox.h) into a buffer. */
#ifndef DRL_RNG_FILL_H
#define DRL_RNG_FILL_H

#include <stdint.h>

#include "device.h"
#include "hd.h"
#include "philox.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum drl_rng_dist {
  DRL_DIST_U32 = 0,     /* raw 32-bit words (out is uint32_t*) */
  DRL_DIST_UNIFORM,     /* [0, 1), 24 bits */
  DRL_DIST_RADEMACHER,  /* +1 / -1 */
  DRL_DIST_NORMAL       /* standard normal, Box-Muller */
} drl_rng_dist;

typedef struct drl_rng_stream {
  uint64_t seed;
  uint32_t step;
  uint32_t tag;
} drl_rng_stream;

/* out[k] = element (offset + k) of the stream under dist, k < n; out lives on dev. Bit-identical on CPU and GPU. */
drl_status drl_rng_fill(const drl_device *dev, void *out, uint64_t n, drl_rng_stream s, uint64_t offset,
                        drl_rng_dist dist);

drl_status drl_rng_fill_cpu(void *out, uint64_t n, drl_rng_stream s, uint64_t offset, drl_rng_dist dist);
drl_status drl_rng_fill_cuda(const drl_device *dev, void *out, uint64_t n, drl_rng_stream s, uint64_t offset,
                             drl_rng_dist dist);

#ifdef __cplusplus
}
#endif

/* The four elements 4q..4q+3 under dist, as the bits stored in out: one Philox block serves all four.
 * Shared by both implementations. */
static inline DRL_HD void drl_rng_fill_block(drl_rng_stream s, uint64_t q, drl_rng_dist dist, uint32_t out[4]) {
  drl_philox_block b = drl_rng_block(s.seed, s.step, s.tag, q);
  for (int k = 0; k < 4; ++k) {
    if (dist == DRL_DIST_UNIFORM) out[k] = drl_float_bits(drl_u32_to_uniform(b.v[k]));
    else if (dist == DRL_DIST_RADEMACHER) out[k] = drl_float_bits(drl_u32_to_rademacher(b.v[k]));
    else out[k] = b.v[k];
  }
  if (dist == DRL_DIST_NORMAL) {
    float r[4];
    drl_box_muller(b.v[0], b.v[1], &r[0], &r[1]);
    drl_box_muller(b.v[2], b.v[3], &r[2], &r[3]);
    for (int k = 0; k < 4; ++k) out[k] = drl_float_bits(r[k]);
  }
}

/* Writes elements [offset, offset + n) that fall in block q into out (out[0] is element offset). */
static inline DRL_HD void drl_rng_fill_store(drl_rng_stream s, uint64_t q, drl_rng_dist dist, uint64_t offset,
                                             uint64_t n, uint32_t *out) {
  uint32_t v[4];
  drl_rng_fill_block(s, q, dist, v);
  for (int k = 0; k < 4; ++k) {
    uint64_t e = 4 * q + (uint64_t)k;
    if (e >= offset && e - offset < n) out[e - offset] = v[k];
  }
}

#endif /* DRL_RNG_FILL_H */
