/* Token embedding lookup and its gradient. */
#ifndef DRL_EMBEDDING_H
#define DRL_EMBEDDING_H

#include <stdint.h>

#include "device.h"
#include "hd.h"
#include "philox.h" /* drl_fadd: explicitly rounded */

#ifdef __cplusplus
extern "C" {
#endif

/* out[n, :] = table[tokens[n], :] for n < N; every token must be in [0, V) (checked on the CPU, where a bad token is
 * DRL_ERR_INVALID_ARG naming it and its position, and nothing is written). The GPU cannot report without a sync:
 * there a bad token's row is written as NaN, so the loss shows it, and nothing outside the table is read. */
drl_status drl_embedding_forward(const drl_device *dev, float *out, const int32_t *tokens, const float *table, int N,
                                 int C, int V);

/* Sorted order and chunks of the backward: occurrence i (in increasing n) of token t has the sorted index
 * s = (occurrences of tokens < t) + i, and the sorted indices fall in chunks of DRL_EMBEDDING_CHUNK. */
#define DRL_EMBEDDING_CHUNK 64

/* dtable[tokens[n], :] += dout[n, :] without atomics, in one fixed order on both backends (bit-identical on CPU and
 * GPU, whatever the grid or thread count): each token's gradient is dtable + the elements of its first chunk one by
 * one, then each later chunk's partial sum (its elements there, summed one by one from the first), in chunk order.
 * scratch: drl_embedding_scratch_bytes(dev, N, C) bytes on dev. A bad token: an error naming it on the CPU (dtable
 * untouched), skipped on the GPU. */
drl_status drl_embedding_backward(const drl_device *dev, float *dtable, const float *dout, const int32_t *tokens,
                                  int N, int C, int V, void *scratch);

/* Scratch bytes drl_embedding_backward needs on dev: four arrays of N 32-bit words (sort keys and positions, each
 * double-buffered), then ceil(N / DRL_EMBEDDING_CHUNK) x C floats of chunk partial sums, each rounded up to 256
 * bytes; on the GPU then CUB's temporary storage of its radix sort, rounded likewise (-1 if CUB cannot size it).
 * 0 when N or C is 0. */
int64_t drl_embedding_scratch_bytes(const drl_device *dev, int N, int C);

drl_status drl_embedding_forward_cpu(float *out, const int32_t *tokens, const float *table, int N, int C, int V);
drl_status drl_embedding_backward_cpu(float *dtable, const float *dout, const int32_t *tokens, int N, int C, int V,
                                      void *scratch);
drl_status drl_embedding_forward_cuda(const drl_device *dev, float *out, const int32_t *tokens, const float *table,
                                      int N, int C, int V);
drl_status drl_embedding_backward_cuda(const drl_device *dev, float *dtable, const float *dout,
                                       const int32_t *tokens, int N, int C, int V, void *scratch);
int64_t drl_embedding_sort_temp_bytes_cuda(int N);

#ifdef __cplusplus
}
#endif

/* ---- the math shared by both implementations ---- */

/* The scratch layout on both backends: sort keys, their second buffer, positions, theirs (each
 * drl_embedding_array_bytes), then the chunk partial sums; the GPU's CUB storage follows. */
static inline int64_t drl_embedding_array_bytes(int N) { return ((int64_t)N * 4 + 255) & ~(int64_t)255; }
static inline int64_t drl_embedding_carry_bytes(int N, int C) {
  return (((int64_t)N + DRL_EMBEDDING_CHUNK - 1) / DRL_EMBEDDING_CHUNK * C * 4 + 255) & ~(int64_t)255;
}

static inline DRL_HD int drl_embedding_token_ok(int32_t tok, int V) { return tok >= 0 && tok < V; }

/* One step of a token's gradient sum: one explicitly rounded add in the documented order, nothing to fuse. */
static inline DRL_HD float drl_embedding_acc(float acc, float g) { return drl_fadd(acc, g); }

/* Terms read ahead at a time by the sums below, so several loads are in flight while the adds stay in order. */
#define DRL_EMBEDDING_READ_AHEAD 8

/* The end of the run of keys[s] in the sorted keys[0, N): the first index after s with another key, or N. Galloping
 * then bisecting, so a run of one costs a load or two and a run over the whole batch a few dozen. */
static inline DRL_HD int drl_embedding_run_end(const uint32_t *keys, int s, int N) {
  uint32_t t = keys[s];
  int lo = s, hi = N; /* keys[lo] == t; hi == N or keys[hi] != t */
  for (int step = 1; step < N - lo; step *= 2) {
    if (keys[lo + step] != t) {
      hi = lo + step;
      break;
    }
    lo += step;
    if (step > (N - lo) / 2) break; /* the next step would pass N */
  }
  while (hi - lo > 1) {
    int mid = lo + (hi - lo) / 2;
    if (keys[mid] == t) lo = mid;
    else hi = mid;
  }
  return hi;
}

/* acc + dout[pos[s], c] for s in [s0, s1), added one by one. */
static inline DRL_HD float drl_embedding_sum(float acc, const int32_t *pos, const float *dout, int s0, int s1, int C,
                                             int c) {
  int s = s0;
  for (; s + DRL_EMBEDDING_READ_AHEAD <= s1; s += DRL_EMBEDDING_READ_AHEAD) {
    float g[DRL_EMBEDDING_READ_AHEAD];
    for (int u = 0; u < DRL_EMBEDDING_READ_AHEAD; ++u) g[u] = dout[(int64_t)pos[s + u] * C + c];
    for (int u = 0; u < DRL_EMBEDDING_READ_AHEAD; ++u) acc = drl_embedding_acc(acc, g[u]);
  }
  for (; s < s1; ++s) acc = drl_embedding_acc(acc, dout[(int64_t)pos[s] * C + c]);
  return acc;
}

/* acc + carry[k * C + c] for k in [k0, k1), added one by one. */
static inline DRL_HD float drl_embedding_sum_carries(float acc, const float *carry, int k0, int k1, int C, int c) {
  int k = k0;
  for (; k + DRL_EMBEDDING_READ_AHEAD <= k1; k += DRL_EMBEDDING_READ_AHEAD) {
    float g[DRL_EMBEDDING_READ_AHEAD];
    for (int u = 0; u < DRL_EMBEDDING_READ_AHEAD; ++u) g[u] = carry[(int64_t)(k + u) * C + c];
    for (int u = 0; u < DRL_EMBEDDING_READ_AHEAD; ++u) acc = drl_embedding_acc(acc, g[u]);
  }
  for (; k < k1; ++k) acc = drl_embedding_acc(acc, carry[(int64_t)k * C + c]);
  return acc;
}

/* Stage 1, chunk j, channel c: if the chunk's first element continues a run of a valid token begun in an earlier
 * chunk, carry[j * C + c] = the sum of that run's elements inside chunk j, from the first one. keys and pos are the
 * sorted tokens (a bad one as V, sorting last) and their positions. */
static inline DRL_HD void drl_embedding_carry(float *carry, const uint32_t *keys, const int32_t *pos, const float *dout,
                                              int N, int C, int V, int j, int c) {
  int s0 = j * DRL_EMBEDDING_CHUNK;
  if (j == 0 || s0 >= N || keys[s0] >= (uint32_t)V || keys[s0] != keys[s0 - 1]) return;
  int end = N - s0 > DRL_EMBEDDING_CHUNK ? s0 + DRL_EMBEDDING_CHUNK : N;
  int e = drl_embedding_run_end(keys, s0, N);
  if (e > end) e = end;
  carry[(int64_t)j * C + c] = drl_embedding_sum(dout[(int64_t)pos[s0] * C + c], pos, dout, s0 + 1, e, C, c);
}

/* Stage 2, chunk j, channel c: every run of a valid token that starts in chunk j, summed in the documented order
 * (dtable, its elements in this chunk, then the carries of the later chunks it reaches) and written once. A run's
 * row is written by the chunk where it starts only, so chunks run in parallel without atomics. */
static inline DRL_HD void drl_embedding_chunk(float *dtable, const float *carry, const uint32_t *keys,
                                              const int32_t *pos, const float *dout, int N, int C, int V, int j,
                                              int c) {
  int s = j * DRL_EMBEDDING_CHUNK;
  if (s >= N) return;
  int end = N - s > DRL_EMBEDDING_CHUNK ? s + DRL_EMBEDDING_CHUNK : N;
  if (j > 0 && keys[s] == keys[s - 1]) { /* a run begun earlier: its chunk sums this piece through carry */
    s = drl_embedding_run_end(keys, s, N);
    if (s > end) s = end;
  }
  while (s < end && keys[s] < (uint32_t)V) {
    int e = drl_embedding_run_end(keys, s, N);
    float *row = dtable + (int64_t)keys[s] * C;
    float acc = drl_embedding_sum(row[c], pos, dout, s, e < end ? e : end, C, c);
    /* the chunks the run reaches past this one: j + 1 ... the chunk of its last element */
    row[c] = drl_embedding_sum_carries(acc, carry, j + 1, (e - 1) / DRL_EMBEDDING_CHUNK + 1, C, c);
    s = e < end ? e : end;
  }
}

#endif /* DRL_EMBEDDING_H */
