/* Philox4x32-10 (Salmon et al. 2011; the generator of Random123 and cuRAND) and the engine's stream layout.
 *
 * Every random number is addressed, never drawn from a state: element i of stream (seed, step, tag) is word i%4 of
 *   philox4x32_10(counter = (lo32(i/4), hi32(i/4), step, tag), key = (lo32(seed), hi32(seed))).
 * This is cuRAND's curand_init(seed, subsequence = step | tag << 32, offset = i) stream, so nothing depends on grid
 * size, thread count or chunking, and any rank can regenerate any other rank's numbers.
 *
 * Transforms use only IEEE-exact or correctly rounded operations (int->float, power-of-two scaling, fmaf, sqrtf and
 * explicitly rounded mul/add), so the CPU and the GPU produce the same bits. Normals use engine-owned log/sin/cos
 * polynomials, never libm or curand_normal (whose GPU sin/cos are approximate). */
#ifndef DRL_PHILOX_H
#define DRL_PHILOX_H

#include <stdint.h>
#include <string.h>

#include "hd.h"

#ifndef __CUDACC__
#include <math.h>
#endif

/* Purpose of a stream: the low 4 bits of the tag. */
enum drl_rng_purpose {
  DRL_RNG_ROLLOUT = 0,   /* token sampling during rollout */
  DRL_RNG_SDE = 1,       /* SDE noise of the flow sampler */
  DRL_RNG_SPSA = 2,      /* SPSA perturbation z */
  DRL_RNG_ROUNDING = 3,  /* sender-side stochastic rounding (SPSA codec) */
  DRL_RNG_DATA = 4,      /* data order and task generation */
  DRL_RNG_INIT = 5,      /* parameter initialisation */
  DRL_RNG_DROPOUT = 6,
  DRL_RNG_TEST = 15
};

/* The uid of every stream (bits 16-31 of the tag), by purpose: every random number of dynrl is drawn from one of
 * these, so no two users share a stream. ROLLOUT streams take the uid the caller gives (0 in the engine); SPSA and
 * ROUNDING streams fold the high bits of the sample index into it (kernels/spsa.h). */
enum drl_rng_uid {
  /* DRL_RNG_DATA */
  DRL_UID_TASK_ADD = 1, /* the built-in tasks' generators (data/task.c) */
  DRL_UID_TASK_SORT = 2,
  DRL_UID_TASK_KEYFORK = 3,
  DRL_UID_SFT_ORDER = 16,     /* SFT examples of a step (engine/sft.c) */
  DRL_UID_GRPO_PROMPTS = 17,  /* GRPO prompts of an iteration (engine/run.c) */
  DRL_UID_FLOW2D_POINTS = 18, /* flow2d training points (data/flow2d.c) */
  DRL_UID_FLOW_MATCHING = 19, /* flow-matching point, time and noise (engine/phase_flow.c) */
  /* DRL_RNG_INIT */
  DRL_UID_INIT_TRANSFORMER = 0,
  DRL_UID_INIT_FLOW = 1,
  /* DRL_RNG_SDE (samplers/sde_tree.c) */
  DRL_UID_SDE_ROOT_NOISE = 1,
  DRL_UID_SDE_ODE_NOISE = 2,
  DRL_UID_SDE_EDGE_NOISE = 3
};

typedef struct drl_philox_block {
  uint32_t v[4];
} drl_philox_block;

/* Tag = purpose (bits 0-3) | sample (bits 4-15) | uid (bits 16-31). Larger sample spaces fold into the element index. */
static inline DRL_HD uint32_t drl_rng_tag(uint32_t purpose, uint32_t uid, uint32_t sample) {
  return (purpose & 0xFu) | ((sample & 0xFFFu) << 4) | ((uid & 0xFFFFu) << 16);
}

static inline DRL_HD void drl_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
  uint64_t p = (uint64_t)a * (uint64_t)b;
  *hi = (uint32_t)(p >> 32);
  *lo = (uint32_t)p;
}

/* The bare bijection: 10 rounds on a 128-bit counter with a 64-bit key. */
static inline DRL_HD drl_philox_block drl_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    drl_mulhilo32(0xD2511F53u, c0, &hi0, &lo0);
    drl_mulhilo32(0xCD9E8D57u, c2, &hi1, &lo1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  drl_philox_block out = {{c0, c1, c2, c3}};
  return out;
}

/* The block holding elements 4q..4q+3 of stream (seed, step, tag). */
static inline DRL_HD drl_philox_block drl_rng_block(uint64_t seed, uint32_t step, uint32_t tag, uint64_t q) {
  uint32_t ctr[4] = {(uint32_t)q, (uint32_t)(q >> 32), step, tag};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  return drl_philox4x32_10(ctr, key);
}

/* Raw 32-bit element i of stream (seed, step, tag). */
static inline DRL_HD uint32_t drl_rng_u32(uint64_t seed, uint32_t step, uint32_t tag, uint64_t i) {
  return drl_rng_block(seed, step, tag, i >> 2).v[i & 3];
}

/* Raw 64-bit element i of stream (seed, step, tag): 32-bit elements 2i (high half) and 2i + 1 (low half). */
static inline DRL_HD uint64_t drl_rng_u64(uint64_t seed, uint32_t step, uint32_t tag, uint64_t i) {
  drl_philox_block b = drl_rng_block(seed, step, tag, i >> 1);
  int w = (int)(i & 1) * 2;
  return ((uint64_t)b.v[w] << 32) | b.v[w + 1];
}

/* Rademacher +1/-1 from the top bit. */
static inline DRL_HD float drl_u32_to_rademacher(uint32_t x) { return (x & 0x80000000u) ? 1.0f : -1.0f; }

/* ---- correctly rounded primitives, never contracted into FMAs behind our back ---- */
static inline DRL_HD float drl_fmul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b; /* host code is built with -ffp-contract=off */
#endif
}
static inline DRL_HD float drl_fadd(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
static inline DRL_HD float drl_fma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fmaf_rn(a, b, c);
#else
  return fmaf(a, b, c);
#endif
}
static inline DRL_HD float drl_fsqrt(float a) {
#ifdef __CUDA_ARCH__
  return __fsqrt_rn(a);
#else
  return sqrtf(a);
#endif
}
static inline DRL_HD uint32_t drl_float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static inline DRL_HD float drl_bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Uniform in [0, 1) with 24 random bits: exact on every platform. */
static inline DRL_HD float drl_u32_to_uniform(uint32_t x) { return drl_fmul((float)(x >> 8), 0x1p-24f); }

/* Uniform in (0, 1]: for logarithms. */
static inline DRL_HD float drl_u32_to_uniform_pos(uint32_t x) { return drl_fmul((float)((x >> 8) + 1u), 0x1p-24f); }

/* Natural log of a positive normal float (Cephes logf polynomial; within 1 ulp of the correctly rounded log for
 * every such float, checked exhaustively). Sampling uses it on (0, 1], the SDE's log-density also above 1. */
static inline DRL_HD float drl_rng_logf(float x) {
  uint32_t b = drl_float_bits(x);
  int e = (int)((b >> 23) & 0xFFu) - 126; /* x = m * 2^e, m in [0.5, 1) */
  float m = drl_bits_float((b & 0x007FFFFFu) | 0x3F000000u);
  if (m < 0.70710678f) { /* m in [sqrt(1/2), sqrt(2)) */
    e -= 1;
    m = drl_fadd(m, m);
  }
  float t = drl_fadd(m, -1.0f);
  float z = drl_fmul(t, t);
  float p = 7.0376836292e-2f;
  p = drl_fma(p, t, -1.1514610310e-1f);
  p = drl_fma(p, t, 1.1676998740e-1f);
  p = drl_fma(p, t, -1.2420140846e-1f);
  p = drl_fma(p, t, 1.4249322787e-1f);
  p = drl_fma(p, t, -1.6668057665e-1f);
  p = drl_fma(p, t, 2.0000714765e-1f);
  p = drl_fma(p, t, -2.4999993993e-1f);
  p = drl_fma(p, t, 3.3333331174e-1f);
  float y = drl_fmul(drl_fmul(p, t), z);
  float fe = (float)e;
  y = drl_fma(fe, -2.12194440e-4f, y);
  y = drl_fma(z, -0.5f, y);
  float r = drl_fadd(t, y);
  return drl_fma(fe, 0.693359375f, r);
}

/* sin and cos of 2*pi*v for v in [0, 1) given with 24 bits (Cephes sinf/cosf polynomials on [-pi/4, pi/4]). */
static inline DRL_HD void drl_rng_sincos2pi(float v, float *s, float *c) {
  float v4 = drl_fmul(v, 4.0f);             /* exact */
  float q = (float)(int)drl_fadd(v4, 0.5f); /* nearest quadrant; v4 + 0.5 is exact below 2^22 */
  float r = drl_fadd(v4, -q);               /* exact, in [-0.5, 0.5] */
  float x = drl_fmul(r, 1.57079632679f);    /* angle in [-pi/4, pi/4] */
  float z = drl_fmul(x, x);
  float sp = -1.9515295891e-4f;
  sp = drl_fma(sp, z, 8.3321608736e-3f);
  sp = drl_fma(sp, z, -1.6666654611e-1f);
  float sx = drl_fma(drl_fmul(sp, z), x, x);
  float cp = 2.443315711809948e-5f;
  cp = drl_fma(cp, z, -1.388731625493765e-3f);
  cp = drl_fma(cp, z, 4.166664568298827e-2f);
  float cx = drl_fma(drl_fmul(cp, z), z, drl_fma(z, -0.5f, 1.0f));
  switch (((int)q) & 3) {
    case 0: *s = sx; *c = cx; break;
    case 1: *s = cx; *c = -sx; break;
    case 2: *s = -sx; *c = -cx; break;
    default: *s = -cx; *c = sx; break;
  }
}

/* Box-Muller on two words: the two standard normals (r0, r1) of the pair (x, y). */
static inline DRL_HD void drl_box_muller(uint32_t x, uint32_t y, float *r0, float *r1) {
  float u = drl_u32_to_uniform_pos(x);
  float rad = drl_fsqrt(drl_fmul(-2.0f, drl_rng_logf(u)));
  float s, c;
  drl_rng_sincos2pi(drl_u32_to_uniform(y), &s, &c);
  *r0 = drl_fmul(rad, s);
  *r1 = drl_fmul(rad, c);
}

/* Standard normal element i of stream (seed, step, tag): elements 2p and 2p+1 are the Box-Muller pair of words 2p, 2p+1. */
static inline DRL_HD float drl_rng_normal(uint64_t seed, uint32_t step, uint32_t tag, uint64_t i) {
  drl_philox_block b = drl_rng_block(seed, step, tag, i >> 2);
  int pair = (int)(i & 2);
  float r0, r1;
  drl_box_muller(b.v[pair], b.v[pair + 1], &r0, &r1);
  return (i & 1) ? r1 : r0;
}

static inline DRL_HD float drl_rng_uniform(uint64_t seed, uint32_t step, uint32_t tag, uint64_t i) {
  return drl_u32_to_uniform(drl_rng_u32(seed, step, tag, i));
}

static inline DRL_HD float drl_rng_rademacher(uint64_t seed, uint32_t step, uint32_t tag, uint64_t i) {
  return drl_u32_to_rademacher(drl_rng_u32(seed, step, tag, i));
}

#endif /* DRL_PHILOX_H */
