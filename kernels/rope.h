/* Rotary position embedding, HF-Llama "rotate half" pairing: dimension i pairs with i + D/2 (i < D/2),
 * rotated by angle pos * theta^(-2i/D). The cos/sin tables are computed once on the host in double precision, so the
 * CPU and the GPU rotate with the same numbers. */
#ifndef DRL_ROPE_H
#define DRL_ROPE_H

#include <stdint.h>

#include "device.h"
#include "hd.h"
#include "philox.h" /* drl_fmul / drl_fadd: correctly rounded, never contracted into FMAs */

#ifdef __cplusplus
extern "C" {
#endif

/* Host tables cos_t, sin_t [max_pos, D/2]: entry (p, i) = cos/sin(p * theta^(-2i/D)); D even. */
void drl_rope_tables(float *cos_t, float *sin_t, int max_pos, int D, double theta);

/* x [N, heads, D] rotated in place; row n at position pos[n] (0 <= pos < max_pos of the tables, on dev). */
drl_status drl_rope_forward(const drl_device *dev, float *x, const int32_t *pos, const float *cos_t,
                            const float *sin_t, int N, int heads, int D);

/* Backward of drl_rope_forward, in place on the gradient dx (the inverse rotation). */
drl_status drl_rope_backward(const drl_device *dev, float *dx, const int32_t *pos, const float *cos_t,
                             const float *sin_t, int N, int heads, int D);

/* The two halves of both calls above (inverse = 1 for the backward); pos lives where x does. */
drl_status drl_rope_cpu(float *x, const int32_t *pos, const float *cos_t, const float *sin_t, int N, int heads, int D,
                        int inverse);
drl_status drl_rope_cuda(const drl_device *dev, float *x, const int32_t *pos, const float *cos_t, const float *sin_t,
                         int N, int heads, int D, int inverse);

#ifdef __cplusplus
}
#endif

/* Rotates the pair (*a, *b) = (x_i, x_{i+D/2}) by the angle whose cos/sin are c, s; the inverse rotation is s -> -s
 * (bit-exact, negation is exact). Explicitly rounded products and sums, so the GPU gives the CPU's bits. */
static inline DRL_HD void drl_rope_rotate(float *a, float *b, float c, float s) {
  float x1 = *a, x2 = *b;
  *a = drl_fadd(drl_fmul(x1, c), -drl_fmul(x2, s));
  *b = drl_fadd(drl_fmul(x2, c), drl_fmul(x1, s));
}

#endif /* DRL_ROPE_H */
