/* CUDA LM head: cuBLAS logits for a chunk of rows into scratch, then one block per row. Thread l is lane l of the row
 * layout in lm_head.h: it runs the shared online log-sum-exp over logits l, l + blockDim, ... (coalesced), and the
 * block merges the lanes in that layout's fixed tree (warp shuffles, then one warp over the warp results), the tree
 * the CPU runs sequentially: deterministic, no atomics. */
#include <cuda_runtime.h>

#include "check.h"
#include "gemm.h"
#include "lm_head.h"

#define FULL_MASK 0xffffffffu

/* Lane 0 ends with the merge of the warp's 32 states; the pairs are fixed, so the result is too. */
static __device__ drl_lse warp_merge(drl_lse a) {
  for (int off = 16; off > 0; off >>= 1) {
    drl_lse b;
    b.m = __shfl_down_sync(FULL_MASK, a.m, off);
    b.s = __shfl_down_sync(FULL_MASK, a.s, off);
    b.t = __shfl_down_sync(FULL_MASK, a.t, off);
    a = drl_lse_merge(a, b);
  }
  return a;
}

/* The row's state, returned to every thread. blockDim.x is a multiple of 32, at most 1024. */
static __device__ drl_lse block_merge(drl_lse a) {
  __shared__ drl_lse warp_state[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  a = warp_merge(a);
  if (lane == 0) warp_state[warp] = a;
  __syncthreads();
  if (warp == 0) {
    a = lane < nwarps ? warp_state[lane] : drl_lse_empty();
    a = warp_merge(a);
    if (lane == 0) warp_state[0] = a;
  }
  __syncthreads();
  return warp_state[0];
}

static __device__ drl_lse row_stats(const float *z, int V) {
  drl_lse a = drl_lse_empty();
  for (int j = threadIdx.x; j < V; j += blockDim.x) drl_lse_push(&a, z[j]);
  return block_merge(a);
}

/* Row i of the chunk: logprob[i], entropy[i] (pointers already offset to the chunk's first row). */
static __global__ void lm_head_forward_kernel(const float *logits, int V, const int32_t *targets, float *logprob,
                                              float *entropy) {
  int i = blockIdx.x;
  const float *z = logits + (int64_t)i * V;
  drl_lse a = row_stats(z, V);
  if (threadIdx.x == 0) {
    if (logprob) {
      int tg = targets[i];
      logprob[i] = tg < 0 ? 0.0f : tg >= V ? __int_as_float(0x7fc00000) : drl_lse_logprob(a, z[tg]);
    }
    if (entropy) entropy[i] = drl_lse_entropy(a);
  }
}

/* Row i of the chunk: its logits become d L / d (x W^T) in place. Each thread rewrites only the elements it read,
 * and all reads of the row finished before block_merge's barrier, so there is no race. */
static __global__ void lm_head_dlogits_kernel(float *logits, int V, const int32_t *targets, const float *dlogprob,
                                              float temperature) {
  int i = blockIdx.x, tg = targets[i];
  float *z = logits + (int64_t)i * V;
  if (tg < 0) { /* uniform across the block: no thread reaches the barrier in row_stats */
    for (int j = threadIdx.x; j < V; j += blockDim.x) z[j] = 0.0f;
    return;
  }
  drl_lse a = row_stats(z, V);
  float log_s = logf(a.s), g = dlogprob[i] / temperature;
  if (tg >= V) g = __int_as_float(0x7fc00000); /* out of contract: poison the row rather than read past it */
  for (int j = threadIdx.x; j < V; j += blockDim.x) z[j] = drl_lm_head_dlogit(z[j], a.m, log_s, j == tg, g);
}

static drl_status chunk_logits(const drl_device *dev, float *scratch, const float *x, const float *W, int r0, int R,
                               int C, int V, float temperature) {
  return drl_gemm(dev, 0, 1, R, V, C, 1.0f / temperature, x + (int64_t)r0 * C, C, W, C, 0.0f, scratch, V);
}

extern "C" drl_status drl_lm_head_forward_cuda(const drl_device *dev, float *logprob, float *entropy, const float *x,
                                               const float *W, const int32_t *targets, int N, int C, int V,
                                               float temperature, float *scratch, int chunk_rows) {
  cudaStream_t stream = (cudaStream_t)dev->stream;
  int threads = drl_lm_head_lanes(V); /* one thread per lane of the row layout */
  for (int r0 = 0; r0 < N; r0 += chunk_rows) {
    int R = N - r0 < chunk_rows ? N - r0 : chunk_rows;
    DRL_TRY(chunk_logits(dev, scratch, x, W, r0, R, C, V, temperature));
    lm_head_forward_kernel<<<R, threads, 0, stream>>>(scratch, V, logprob ? targets + r0 : NULL,
                                                      logprob ? logprob + r0 : NULL, entropy ? entropy + r0 : NULL);
    CUDA_CHECK(cudaGetLastError());
  }
  return DRL_OK;
}

extern "C" drl_status drl_lm_head_backward_cuda(const drl_device *dev, float *dx, float *dW, const float *dlogprob,
                                                const float *x, const float *W, const int32_t *targets, int N, int C,
                                                int V, float temperature, float *scratch, int chunk_rows) {
  cudaStream_t stream = (cudaStream_t)dev->stream;
  int threads = drl_lm_head_lanes(V); /* one thread per lane of the row layout */
  for (int r0 = 0; r0 < N; r0 += chunk_rows) {
    int R = N - r0 < chunk_rows ? N - r0 : chunk_rows;
    DRL_TRY(chunk_logits(dev, scratch, x, W, r0, R, C, V, temperature));
    lm_head_dlogits_kernel<<<R, threads, 0, stream>>>(scratch, V, targets + r0, dlogprob + r0, temperature);
    CUDA_CHECK(cudaGetLastError());
    if (dx) DRL_TRY(drl_gemm(dev, 0, 0, R, C, V, 1.0f, scratch, V, W, C, 0.0f, dx + (int64_t)r0 * C, C));
    if (dW) DRL_TRY(drl_gemm(dev, 1, 0, V, C, R, 1.0f, scratch, V, x + (int64_t)r0 * C, C, 1.0f, dW, C));
  }
  return DRL_OK;
}
