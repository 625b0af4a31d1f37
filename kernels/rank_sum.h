/* rank_sum: the fixed-order tree sum over ranks of a deterministic all-reduce. A rank holds `count` pieces of n
 * floats (piece i from rank i, laid out in[i * n + k]) and sums them, element by element, in a tree that depends on
 * count alone, so every rank and both backends produce the same bits whatever the transport delivered first.
 *
 * The tree over leaves x_0 .. x_{c-1} is the streaming binary counter: push the leaves left to right; after each push,
 * while the top two entries cover equally many leaves, replace them by (lower + upper); at the end fold the stack
 * from the top: v = top, then v = entry + v for each entry below. Equivalently T(c) = P(2^j) + T(c - 2^j) with 2^j
 * the largest power of two <= c and P the perfect pairwise tree. Every add is one drl_fadd. */
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

#endif /* DRL_RANK_SUM_H */
