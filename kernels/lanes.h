/* The 32-lane order of a row sum, shared by the kernels that give a row to one CUDA warp: lane l accumulates elements
 * l, l + 32, l + 64, ... in that order, then the lanes combine in the pairwise tree p[i] += p[i + o] for
 * o = 16, 8, 4, 2, 1 (a warp's xor butterfly read from lane 0). The CPU runs the lanes in a loop and the same tree,
 * so both produce the same bits. Every add is rounded once (drl_fadd, drl_dadd). */
#ifndef DRL_LANES_H
#define DRL_LANES_H

#include "exp.h"    /* drl_dadd */
#include "hd.h"
#include "philox.h" /* drl_fadd */

/* Lanes of a row sum: the CUDA warp size. */
#define DRL_LANES 32

/* The lane tree over float partials, p[0] the result (p is overwritten). */
static inline DRL_HD float drl_lane_tree_f(float p[DRL_LANES]) {
  for (int o = DRL_LANES / 2; o >= 1; o /= 2)
    for (int i = 0; i < o; ++i) p[i] = drl_fadd(p[i], p[i + o]);
  return p[0];
}

/* The lane tree over double partials, p[0] the result (p is overwritten). */
static inline DRL_HD double drl_lane_tree_d(double p[DRL_LANES]) {
  for (int o = DRL_LANES / 2; o >= 1; o /= 2)
    for (int i = 0; i < o; ++i) p[i] = drl_dadd(p[i], p[i + o]);
  return p[0];
}

#ifdef __CUDACC__
/* The lane tree across a warp: at offset o lane i adds lane i ^ o, so lane 0 adds lanes in the order of
 * drl_lane_tree_f; its result goes to every lane. All 32 lanes must call it (rows warp-uniform). */
static __device__ inline float drl_warp_tree_f(float v) {
  for (int o = DRL_LANES / 2; o >= 1; o /= 2) v = drl_fadd(v, __shfl_xor_sync(0xffffffffu, v, o));
  return __shfl_sync(0xffffffffu, v, 0);
}

/* drl_warp_tree_f on double partials: the order of drl_lane_tree_d. */
static __device__ inline double drl_warp_tree_d(double v) {
  for (int o = DRL_LANES / 2; o >= 1; o /= 2) v = drl_dadd(v, __shfl_xor_sync(0xffffffffu, v, o));
  return __shfl_sync(0xffffffffu, v, 0);
}
#endif

#endif /* DRL_LANES_H */
