/* The 16-bit floats of pretrained checkpoints, to and from fp32, bit-exactly on host and device:
 * bfloat16 (8 exponent bits: the top half of a float) and IEEE binary16 (5 exponent bits, subnormals). */
#ifndef DRL_FLOAT16_H
#define DRL_FLOAT16_H

#include <stdint.h>

#include "hd.h"
#include "philox.h" /* drl_float_bits, drl_bits_float */

/* bf16 -> fp32: exact. */
static inline DRL_HD float drl_bf16_to_f32(uint16_t h) { return drl_bits_float((uint32_t)h << 16); }

/* fp32 -> bf16, rounded to nearest even; a NaN stays a (quiet) NaN, never rounds to infinity. */
static inline DRL_HD uint16_t drl_f32_to_bf16(float f) {
  uint32_t u = drl_float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* IEEE binary16 -> fp32: exact, subnormals, infinities and NaN payloads included. */
static inline DRL_HD float drl_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return drl_bits_float(sign | 0x7f800000u | (man << 13)); /* inf, NaN */
  if (exp != 0) return drl_bits_float(sign | ((exp + 112u) << 23) | (man << 13));
  if (man == 0) return drl_bits_float(sign); /* +-0 */
  /* A subnormal: normalise the mantissa (value man * 2^-24). */
  int e = -1;
  do {
    man <<= 1;
    ++e;
  } while (!(man & 0x400u));
  return drl_bits_float(sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13));
}

#endif /* DRL_FLOAT16_H */
