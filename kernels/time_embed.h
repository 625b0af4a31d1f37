/* Sinusoidal time embedding of the flow velocity network (DESIGN.md section 5): per time t, sin and cos of 2 pi
 * freq[k] t. The angle is reduced exactly as a fraction of a turn, v = frac(freq[k] t), and sin / cos come from
 * philox.h's engine-owned drl_rng_sincos2pi, so the CPU and the GPU agree bit for bit (libm and CUDA sinf do not). */
#ifndef DRL_TIME_EMBED_H
#define DRL_TIME_EMBED_H

#include <stdint.h>

#include "device.h"
#include "hd.h"
#include "philox.h" /* drl_fmul, drl_fadd, drl_rng_sincos2pi */

#ifdef __cplusplus
extern "C" {
#endif

/* Sinusoidal features of times t [rows] (dev): out[r, 2k] = sin(2 pi v), out[r, 2k + 1] = cos(2 pi v),
 * v = frac(freq[k] * t[r]) (the product and the fraction each rounded once), k < half, through drl_rng_sincos2pi:
 * the same bits on both backends. freq [half] on dev (the caller fills it, e.g. geometric frequencies). */
drl_status drl_time_embed(const drl_device *dev, float *out, const float *t, const float *freq, int64_t rows, int half);

/* Host helper: freq[k] = max_freq^(k / (half - 1)) (freq[0] = 1; half == 1 gives {1}), computed in double. */
void drl_time_embed_freqs(float *freq, int half, double max_freq);

drl_status drl_time_embed_cpu(float *out, const float *t, const float *freq, int64_t rows, int half);
drl_status drl_time_embed_cuda(const drl_device *dev, float *out, const float *t, const float *freq, int64_t rows,
                               int half);

#ifdef __cplusplus
}
#endif

/* ---- the math shared by both implementations ---- */

/* v = frac(p) = p - floor(p), in [0, 1]. For p >= 0 the subtraction is exact (it keeps p's own fraction bits, so
 * v < 1); for p < 0 it rounds once and can reach 1.0 (p = -2^-30: 1 - 2^-30 rounds to 1), which drl_rng_sincos2pi maps
 * to exactly (0, 1), a full turn, so no clamp is needed (one to 1 - 2^-24 would only add an error of 3.7e-7). floorf is
 * exact on both backends. |p| >= 2^23 has no fraction bits: v = 0. NaN (also from p = +-inf) stays NaN. */
static inline DRL_HD float drl_time_frac(float p) { return drl_fadd(p, -floorf(p)); }

/* The (sin, cos) pair of one time and one frequency. A NaN angle gives NaN features without calling
 * drl_rng_sincos2pi, whose float-to-int conversion of NaN would be undefined behaviour in C. */
static inline DRL_HD void drl_time_embed_pair(float t, float freq, float *s, float *c) {
  float v = drl_time_frac(drl_fmul(freq, t));
  if (v != v) {
    *s = v;
    *c = v;
    return;
  }
  drl_rng_sincos2pi(v, s, c);
}

#endif /* DRL_TIME_EMBED_H */
