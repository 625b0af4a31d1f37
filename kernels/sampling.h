/* Token sampling over one row of logits (already divided by the temperature): top-k, then top-p (nucleus) over what
 * top-k kept, then one draw by inverse CDF with a uniform u in [0, 1). Plain per-row functions over caller-provided
 * work arrays (DRL_HD), shared by the CPU rollout loop and a later GPU kernel; and the row's log-sum-exp in the LM
 * head's lane layout, so the log-probs and entropies a rollout records carry the training forward's bits.
 *
 * Candidate order: higher logit first, lower token id first among equal logits. It is a strict total order, so the
 * kept set and its order follow from the logits alone, whatever the selection algorithm. Logits must be finite. */
#ifndef DRL_SAMPLING_H
#define DRL_SAMPLING_H

#include <stdint.h>

#include "hd.h"
#include "lm_head.h"

#ifndef __CUDACC__
#include <math.h>
#endif

/* Whether token a comes before token b in candidate order. */
static inline DRL_HD int drl_sample_before(const float *z, int32_t a, int32_t b) {
  return z[a] > z[b] || (z[a] == z[b] && a < b);
}

/* Restores the heap below node i of h[0, n), a heap whose every node comes after its children in candidate order
 * (the root is the last candidate). */
static inline DRL_HD void drl_sample_sift_down(const float *z, int32_t *h, int n, int i) {
  for (;;) {
    int c = 2 * i + 1;
    if (c >= n) return;
    if (c + 1 < n && drl_sample_before(z, h[c], h[c + 1])) ++c; /* the later child */
    if (!drl_sample_before(z, h[i], h[c])) return;
    int32_t x = h[i];
    h[i] = h[c];
    h[c] = x;
    i = c;
  }
}

/* The first k tokens of z[0, V) in candidate order into idx[0, k), 1 <= k <= V: a bounded heap, O(V log k), no
 * recursion and no allocation, so a GPU thread can run it too. */
static inline DRL_HD void drl_sample_top(const float *z, int V, int k, int32_t *idx) {
  for (int i = 0; i < k; ++i) idx[i] = i;
  for (int i = k / 2 - 1; i >= 0; --i) drl_sample_sift_down(z, idx, k, i);
  for (int j = k; j < V; ++j)
    if (drl_sample_before(z, j, idx[0])) { /* beats the last kept: replace it */
      idx[0] = j;
      drl_sample_sift_down(z, idx, k, 0);
    }
  for (int n = k - 1; n > 0; --n) { /* heap sort: the last candidate moves to the end each round */
    int32_t x = idx[0];
    idx[0] = idx[n];
    idx[n] = x;
    drl_sample_sift_down(z, idx, n, 0);
  }
}

/* The candidates that top_k (0 or >= V: off) and top_p (>= 1: off) keep: ids in idx[0, n), weights exp(z - z_max)
 * in w[0, n); returns n >= 1. With both off the whole row is kept in id order (no sort); otherwise in candidate
 * order. top_p keeps the shortest prefix whose weight reaches top_p times the weight top-k kept: the smallest set with
 * that much probability mass, ties in candidate order (a lower id first). idx and w hold V entries. */
static inline DRL_HD int drl_sample_candidates(const float *z, int V, int top_k, float top_p, int32_t *idx,
                                               float *w) {
  int k = top_k > 0 && top_k < V ? top_k : V;
  float mx;
  if (k < V || top_p < 1.0f) {
    drl_sample_top(z, V, k, idx);
    mx = z[idx[0]];
  } else {
    mx = z[0];
    for (int j = 0; j < V; ++j) {
      idx[j] = j;
      mx = fmaxf(mx, z[j]);
    }
  }
  float total = 0.0f;
  for (int i = 0; i < k; ++i) {
    w[i] = expf(z[idx[i]] - mx);
    total += w[i];
  }
  if (!(top_p < 1.0f)) return k;
  float need = top_p * total, cum = 0.0f;
  for (int i = 0; i < k; ++i) {
    cum += w[i];
    if (cum >= need) return i + 1;
  }
  return k;
}

/* The candidate that u in [0, 1) draws from the kept weights, renormalised: the first whose cumulative weight exceeds
 * u times their total. A weight of 0 is never drawn. */
static inline DRL_HD int32_t drl_sample_draw(const int32_t *idx, const float *w, int n, float u) {
  float total = 0.0f;
  for (int i = 0; i < n; ++i) total += w[i];
  float target = u * total, cum = 0.0f;
  int last = 0;
  for (int i = 0; i < n; ++i) {
    if (w[i] > 0.0f) last = i;
    cum += w[i];
    if (target < cum) return idx[i];
  }
  return idx[last]; /* u * total rounded up to the total itself */
}

/* The row's log-sum-exp state in the LM head's lane layout and merge tree (lm_head.h), run sequentially: for the same
 * logits it has drl_lm_head_forward's bits, so drl_lse_logprob and drl_lse_entropy on it give the training forward's
 * numbers. Host only: it keeps 512 lane states on the stack (the GPU runs the layout one block per row, lm_head.cu). */
static inline drl_lse drl_sample_row_lse(const float *z, int V) {
  drl_lse a[512], w[32];
  int lanes = drl_lm_head_lanes(V), groups = lanes / 32;
  for (int l = 0; l < lanes; ++l) a[l] = drl_lse_empty();
  for (int j = 0; j < V; ++j) drl_lse_push(&a[j & (lanes - 1)], z[j]);
  for (int g = 0; g < 32; ++g) {
    w[g] = drl_lse_empty(); /* past the last group */
    if (g >= groups) continue;
    drl_lse *p = a + 32 * g;
    for (int off = 16; off > 0; off >>= 1) /* one warp's shuffle tree */
      for (int l = 0; l < off; ++l) p[l] = drl_lse_merge(p[l], p[l + off]);
    w[g] = p[0];
  }
  for (int off = 16; off > 0; off >>= 1)
    for (int l = 0; l < off; ++l) w[l] = drl_lse_merge(w[l], w[l + off]);
  return w[0];
}

#endif /* DRL_SAMPLING_H */
