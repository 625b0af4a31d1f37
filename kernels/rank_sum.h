/* rank_sum: the fixed-order tree sum over ranks of a deterministic all-reduce. A rank holds `count` pieces of n
 * floats (piece i from rank i, laid out in[i * n + k]) and sums them, element by element, in a tree that depends on
 * count alone, so every rank and both backends produce the same bits whatever the transport delivered first.
 *
 * The tree over leaves x_0 .. x_{c-1} is the streaming binary counter: push the leaves left to right; after each push,
 * while the top two entries cover equally many leaves, replace them by (lower + upper); at the end fold the stack
 * from the top: v = top, then v = entry + v for each entry below. Equivalently T(c) = P(2^j) + T(c - 2^j) with 2^j
 * the largest power of two <= c and P the perfect pairwise tree. Every add is one drl_fadd. The GPU runs counts up to
 * 16 on drl_tree_sum_unrolled, the same tree unrolled at compile time (C++ only). */
#ifndef DRL_RANK_SUM_H
#define DRL_RANK_SUM_H

#include <stdint.h>

#include "device.h"
#include "hd.h"
#include "philox.h" /* drl_fadd: explicitly rounded */

#ifdef __cplusplus
extern "C" {
#endif

/* The most pieces one call sums (the stack below is sized for it). */
#define DRL_TREE_SUM_MAX_COUNT 1024

/* out[k] = tree sum over i < count of in[i * n + k], k < n; count in 1..DRL_TREE_SUM_MAX_COUNT. out may be exactly in
 * (the sum lands in piece 0: each element's pieces are read before it is written); any other overlap is an error. */
drl_status drl_rank_sum(const drl_device *dev, float *out, const float *in, int count, int64_t n);

drl_status drl_rank_sum_cpu(float *out, const float *in, int count, int64_t n);
drl_status drl_rank_sum_cuda(const drl_device *dev, float *out, const float *in, int count, int64_t n);

#ifdef __cplusplus
}
#endif

/* Stack depth for DRL_TREE_SUM_MAX_COUNT leaves: at most log2(1024) = 10 entries rest on it, plus the pushed leaf. */
#define DRL_TREE_SUM_DEPTH 11

/* The tree sum of x[i * stride], i < count (1 <= count <= DRL_TREE_SUM_MAX_COUNT). Shared by both implementations. */
static inline DRL_HD float drl_tree_sum_elem(const float *x, int64_t stride, int count) {
  float v[DRL_TREE_SUM_DEPTH];
  int leaves[DRL_TREE_SUM_DEPTH];
  int top = 0;
  for (int i = 0; i < count; ++i) {
    v[top] = x[(int64_t)i * stride];
    leaves[top] = 1;
    ++top;
    while (top >= 2 && leaves[top - 1] == leaves[top - 2]) {
      v[top - 2] = drl_fadd(v[top - 2], v[top - 1]);
      leaves[top - 2] *= 2;
      --top;
    }
  }
  float s = v[top - 1];
  for (int j = top - 2; j >= 0; --j) s = drl_fadd(v[j], s);
  return s;
}

#ifdef __cplusplus
/* The most pieces the compile-time unrolled tree below covers. */
#define DRL_TREE_SUM_UNROLLED_MAX 16

extern "C++" {

/* The largest power of two <= c (c >= 1). */
static inline DRL_HD constexpr int drl_tree_pow2_floor(int c) {
  int p = 1;
  while (2 * p <= c) p *= 2;
  return p;
}

/* P(N) over x[i * stride], i < N (N a power of two): P(N / 2) of the left half + P(N / 2) of the right half. */
template <int N>
static inline DRL_HD float drl_tree_perfect(const float *x, int64_t stride) {
  static_assert(N >= 1 && (N & (N - 1)) == 0, "the perfect tree has a power of two of leaves");
  if constexpr (N == 1) {
    return x[0];
  } else {
    return drl_fadd(drl_tree_perfect<N / 2>(x, stride), drl_tree_perfect<N / 2>(x + (int64_t)(N / 2) * stride, stride));
  }
}

/* drl_tree_sum_elem for count = C known at compile time, T(C) = P(2^j) + T(C - 2^j), unrolled: the same adds in the
 * same order (bit-identical), but no stack in local arrays, so a GPU thread keeps every partial in registers. */
template <int C>
static inline DRL_HD float drl_tree_sum_unrolled(const float *x, int64_t stride) {
  static_assert(C >= 1 && C <= DRL_TREE_SUM_UNROLLED_MAX, "count outside the unrolled range");
  constexpr int P = drl_tree_pow2_floor(C);
  if constexpr (P == C) {
    return drl_tree_perfect<C>(x, stride);
  } else {
    return drl_fadd(drl_tree_perfect<P>(x, stride), drl_tree_sum_unrolled<C - P>(x + (int64_t)P * stride, stride));
  }
}

} /* extern "C++" */
#endif

#endif /* DRL_RANK_SUM_H */
