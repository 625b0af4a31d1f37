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

/* The value of element i under dist, as the bits stored in out. Shared by both implementations. */
static inline DRL_HD uint32_t drl_rng_fill_element(drl_rng_stream s, uint64_t i, drl_rng_dist dist) {
  switch (dist) {
    case DRL_DIST_UNIFORM: return drl_float_bits(drl_rng_uniform(s.seed, s.step, s.tag, i));
    case DRL_DIST_RADEMACHER: return drl_float_bits(drl_rng_rademacher(s.seed, s.step, s.tag, i));
    case DRL_DIST_NORMAL: return drl_float_bits(drl_rng_normal(s.seed, s.step, s.tag, i));
    default: return drl_rng_u32(s.seed, s.step, s.tag, i);
  }
}

#endif /* DRL_RNG_FILL_H */
