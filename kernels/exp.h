/* Engine-owned exponential and sigmoid, and correctly rounded division and double ops: the same bits on CPU and GPU.
 *
 * libm's expf and CUDA's expf / __expf differ by an ulp or two, so any op whose CPU and GPU results must agree bit
 * for bit (the MoE router, SiLU in the flow network) uses these instead. Every float op is rounded once (drl_fadd,
 * drl_fmul, drl_fma from philox.h, drl_fdiv here), so nvcc cannot contract or approximate behind our back. */
#ifndef DRL_EXP_H
#define DRL_EXP_H

#include <stdint.h>

#include "hd.h"
#include "philox.h" /* drl_fadd, drl_fmul, drl_fma, drl_bits_float: explicitly rounded */

/* a / b correctly rounded (nvcc's plain / may be approximate under some flags; __fdiv_rn never is). */
static inline DRL_HD float drl_fdiv(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

/* Correctly rounded double ops: nvcc would otherwise fuse a multiply and an add into one DFMA (one rounding, not two)
 * and the GPU's bits would drift from the CPU's (host code is built with -ffp-contract=off). */
static inline DRL_HD double drl_dadd(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
static inline DRL_HD double drl_dmul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
static inline DRL_HD double drl_ddiv(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

/* Engine-owned e^x (Cephes expf polynomial, explicit fmaf, range reduction by ln2 split in hi/lo parts; x clamped to
 * [-87.3, 88.7]): the same bits on the CPU and the GPU, relative error < 2 ulp. The clamp keeps every result normal
 * and finite (e^-87.3 ~ 1.2e-38 > FLT_MIN, e^88.7 ~ 3.3e38 < FLT_MAX); NaN stays NaN. */
static inline DRL_HD float drl_expf(float x) {
  if (x != x) return x; /* the integer conversion below would turn NaN into a number */
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  /* n = floor(x log2e + 0.5) in [-126, 128]: truncation, then one down where it rounded a negative value up */
  float t = drl_fma(x, 1.44269504088896341f, 0.5f);
  int n = (int)t;
  if ((float)n > t) n -= 1;
  float fn = (float)n;
  /* r = x - n ln2 in |r| <~ ln2/2, ln2 = 0.693359375 (exact in 9 bits, so n * C1 is exact) - 2.12194440e-4 */
  float r = drl_fma(fn, -0.693359375f, x);
  r = drl_fma(fn, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = drl_fma(p, r, 1.3981999507e-3f);
  p = drl_fma(p, r, 8.3334519073e-3f);
  p = drl_fma(p, r, 4.1665795894e-2f);
  p = drl_fma(p, r, 1.6666665459e-1f);
  p = drl_fma(p, r, 5.0000001201e-1f);
  float y = drl_fadd(drl_fma(p, drl_fmul(r, r), r), 1.0f); /* e^r = 1 + r + r^2 p(r) */
  if (n > 127) { /* 2^128 has no float: take one factor 2 into y (exact; the result stays below FLT_MAX) */
    y = drl_fmul(y, 2.0f);
    n -= 1;
  }
  return drl_fmul(y, drl_bits_float((uint32_t)(n + 127) << 23)); /* exact power-of-two scaling: the result is normal */
}

/* 1 / (1 + drl_expf(-z)), each op rounded once: relative error <= 3 ulp for z >= -87 (below, the clamp of e^-z makes
 * it a tiny positive constant, possibly subnormal). Always in (0, 1] for finite or infinite z (drl_expf's clamp keeps
 * the denominator finite), so s (1 - s) and sums of scores never see 0 / 0. "exact" as in reproducible: swiglu.h's
 * drl_sigmoidf (libm expf) is a few ulp apart between the backends. */
static inline DRL_HD float drl_sigmoid_exact(float z) { return drl_fdiv(1.0f, drl_fadd(1.0f, drl_expf(-z))); }

#endif /* DRL_EXP_H */
