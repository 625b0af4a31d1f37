/* Rotary position embedding, HF-Llama "rotate half" pairing: dimension i pairs with i + D/2 (i < D/2),
 * rotated by angle pos * theta^(-2i/D). The cos/sin tables are computed once on the host (the model's from fp32
 * inverse frequencies as Hugging Face computes them), so the CPU and the GPU rotate with the same numbers. */
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

/* Hugging Face's inverse frequencies, fp32 as transformers computes them: inv[i] = 1 / theta^(fp32(2i) / D) for
 * i < D/2, the power taken with theta rounded to float, evaluated in double and rounded once (torch's fp32 pow is
 * within an ulp of that), the reciprocal in fp32. */
void drl_rope_inv_freq(float *inv, int D, double theta);

/* HF "linear" scaling of inv[0, half): inv / factor in fp32. */
void drl_rope_scale_linear(float *inv, int half, float factor);

/* HF "llama3" scaling of inv[0, half), fp32 step by step as transformers does it: wl = 2 pi / inv; wl < orig / high:
 * kept; wl > orig / low: inv / factor; otherwise s = (orig / wl - low) / (high - low), inv = (1 - s) inv / factor +
 * s inv. orig = the original context length, low < high. */
void drl_rope_scale_llama3(float *inv, int half, float factor, float low, float high, int orig);

/* Host tables as HF builds them from fp32 inverse frequencies inv [D/2]: angle = fp32(p * inv[i]), its cos and sin
 * evaluated in double and rounded once (torch's fp32 cos/sin are within an ulp or two of that). */
void drl_rope_tables_from_inv(float *cos_t, float *sin_t, int max_pos, int D, const float *inv);

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
