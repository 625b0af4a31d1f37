/* CUDA attention, the llm.c recipe: permute q/k/v to [B, heads, T, D], scores and outputs as cuBLAS strided-batched
 * GEMMs, a masked row softmax (one warp per row) on the shared row math, and the un-permute.
 *
 * GQA without copies or atomics: in [B, H, T, D] the g = H/KV query heads that share a kv head are adjacent, so their
 * rows form one (g*T) x D matrix. Every product is then one batched GEMM over the B*KV kv heads, and the backward's
 * sums over the g query heads (dk, dv) are the GEMM's own inner dimension: a fixed order, no atomics. */
#include <cuda_runtime.h>

#include "attention.h"
#include "check.h"
#include "cuda_launch.cuh"
#include "gemm.h"

/* dst [B, NH, T, D] <- src [B, T, NH, D] */
static __global__ void permute_kernel(float *dst, const float *src, int B, int T, int NH, int D) {
  int64_t n = (int64_t)B * T * NH * D;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t d = e % D, rest = e / D;
    int64_t t = rest % T, bh = rest / T;
    int64_t h = bh % NH, b = bh / NH;
    dst[e] = src[((b * T + t) * NH + h) * D + d];
  }
}

/* dst [B, T, NH, D] <- src [B, NH, T, D]; rows t < row_start[b] are padding and written as exact zeros (with finite
 * inputs the GEMMs give zeros there too; this keeps them zero whatever the padded rows hold). */
static __global__ void unpermute_kernel(float *dst, const float *src, const int32_t *row_start, int B, int T, int NH,
                                        int D) {
  int64_t n = (int64_t)B * T * NH * D;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t d = e % D, rest = e / D;
    int64_t h = rest % NH, bt = rest / NH;
    int64_t t = bt % T, b = bt / T;
    int rs = row_start ? row_start[b] : 0;
    dst[e] = t < rs ? 0.0f : src[((b * NH + h) * T + t) * D + d];
  }
}

/* Butterfly reductions: every lane ends with the same bits (each step adds the same two values, in either order). */
static __device__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
static __device__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

/* att [rows = B*H*T, T]: scaled scores in, probabilities out (drl_softmax_masked_row, one warp per row). Each lane
 * reads and writes only its own columns, so in place is race-free. Rows are warp-uniform, so whole warps exit. */
static __global__ void softmax_forward_kernel(float *att, const int32_t *row_start, int64_t rows, int H, int T) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t r = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    int t = (int)(r % T), b = (int)(r / T / H);
    int lo, hi;
    drl_attention_key_range(t, row_start ? row_start[b] : 0, &lo, &hi);
    float *x = att + r * T;
    float mx = lo < hi ? x[lo] : 0.0f;
    for (int j = lo + lane; j < hi; j += 32) mx = fmaxf(mx, x[j]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lo + lane; j < hi; j += 32) sum += drl_softmax_weight(x[j], mx);
    sum = warp_sum(sum);
    float inv = lo < hi ? 1.0f / sum : 0.0f;
    for (int j = lane; j < T; j += 32) x[j] = (j >= lo && j < hi) ? drl_softmax_weight(x[j], mx) * inv : 0.0f;
  }
}

/* datt [rows, T]: d prob in, d score (unscaled) out, from the probabilities att (drl_softmax_backward_masked_row). */
static __global__ void softmax_backward_kernel(float *datt, const float *att, const int32_t *row_start, int64_t rows,
                                               int H, int T) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t r = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    int t = (int)(r % T), b = (int)(r / T / H);
    int lo, hi;
    drl_attention_key_range(t, row_start ? row_start[b] : 0, &lo, &hi);
    float *dp = datt + r * T;
    const float *p = att + r * T;
    float dot = 0.0f;
    for (int j = lo + lane; j < hi; j += 32) dot = fmaf(p[j], dp[j], dot);
    dot = warp_sum(dot);
    for (int j = lane; j < T; j += 32) dp[j] = (j >= lo && j < hi) ? drl_softmax_backward_elem(p[j], dp[j], dot) : 0.0f;
  }
}

static drl_status permute(cudaStream_t s, float *dst, const float *src, int B, int T, int NH, int D) {
  permute_kernel<<<drl_grid_for((int64_t)B * T * NH * D, 256, 65535 * 8), 256, 0, s>>>(dst, src, B, T, NH, D);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

static drl_status unpermute(cudaStream_t s, float *dst, const float *src, const int32_t *row_start, int B, int T,
                            int NH, int D) {
  unpermute_kernel<<<drl_grid_for((int64_t)B * T * NH * D, 256, 65535 * 8), 256, 0, s>>>(dst, src, row_start, B, T, NH, D);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

/* 8 warps per block, one row each */
static int softmax_blocks(int64_t rows) { return drl_grid_for(rows, 8, 65535 * 16); }

extern "C" drl_status drl_attention_forward_cuda(const drl_device *dev, float *out, float *att, const float *q,
                                                 const float *k, const float *v, const int32_t *row_start, int B,
                                                 int T, int H, int KV, int D, float *scratch) {
  cudaStream_t s = (cudaStream_t)dev->stream;
  const int g = H / KV;
  const int64_t nq = (int64_t)B * H * T * D, nkv = (int64_t)B * KV * T * D;
  const int64_t TD = (int64_t)T * D, TT = (int64_t)T * T;
  float *qp = scratch, *kp = qp + nq, *vp = kp + nkv;
  DRL_TRY(permute(s, qp, q, B, T, H, D));
  DRL_TRY(permute(s, kp, k, B, T, KV, D));
  DRL_TRY(permute(s, vp, v, B, T, KV, D));
  /* att[b, group] (g*T x T) = scale * Q_group (g*T x D) . K^T; beta = 0 overwrites whatever att held */
  DRL_TRY(drl_gemm_strided_batched(dev, 0, 1, g * T, T, D, drl_attention_scale(D), qp, D, g * TD, kp, D, TD, 0.0f,
                                   att, T, g * TT, B * KV));
  const int64_t rows = (int64_t)B * H * T;
  softmax_forward_kernel<<<softmax_blocks(rows), 256, 0, s>>>(att, row_start, rows, H, T);
  CUDA_CHECK(cudaGetLastError());
  /* out_group (g*T x D) = att_group . V, into q's space (dead once the scores exist; the stream orders it) */
  float *outp = qp;
  DRL_TRY(drl_gemm_strided_batched(dev, 0, 0, g * T, D, T, 1.0f, att, T, g * TT, vp, D, TD, 0.0f, outp, D, g * TD,
                                   B * KV));
  return unpermute(s, out, outp, row_start, B, T, H, D);
}

extern "C" drl_status drl_attention_backward_cuda(const drl_device *dev, float *dq, float *dk, float *dv,
                                                  const float *dout, const float *q, const float *k, const float *v,
                                                  const float *att, const int32_t *row_start, int B, int T, int H,
                                                  int KV, int D, float *scratch) {
  cudaStream_t s = (cudaStream_t)dev->stream;
  const int g = H / KV;
  const int64_t nq = (int64_t)B * H * T * D, nkv = (int64_t)B * KV * T * D;
  const int64_t TD = (int64_t)T * D, TT = (int64_t)T * T;
  const float scale = drl_attention_scale(D);
  float *qp = scratch, *kp = qp + nq, *vp = kp + nkv, *doutp = vp + nkv, *dvp = doutp + nq, *datt = dvp + nkv;
  DRL_TRY(permute(s, qp, q, B, T, H, D));
  DRL_TRY(permute(s, kp, k, B, T, KV, D));
  DRL_TRY(permute(s, vp, v, B, T, KV, D));
  DRL_TRY(permute(s, doutp, dout, B, T, H, D));
  /* d prob: datt_group (g*T x T) = dOut_group . V^T */
  DRL_TRY(drl_gemm_strided_batched(dev, 0, 1, g * T, T, D, 1.0f, doutp, D, g * TD, vp, D, TD, 0.0f, datt, T, g * TT,
                                   B * KV));
  /* dV (T x D) = att_group^T . dOut_group: the inner dimension g*T sums over the group's query heads */
  DRL_TRY(drl_gemm_strided_batched(dev, 1, 0, T, D, g * T, 1.0f, att, T, g * TT, doutp, D, g * TD, 0.0f, dvp, D, TD,
                                   B * KV));
  const int64_t rows = (int64_t)B * H * T;
  softmax_backward_kernel<<<softmax_blocks(rows), 256, 0, s>>>(datt, att, row_start, rows, H, T);
  CUDA_CHECK(cudaGetLastError());
  /* dQ_group = scale * dS_group . K, into dout's space (dead after dV); dK = scale * dS_group^T . Q_group, into v's */
  float *dqp = doutp, *dkp = vp;
  DRL_TRY(drl_gemm_strided_batched(dev, 0, 0, g * T, D, T, scale, datt, T, g * TT, kp, D, TD, 0.0f, dqp, D, g * TD,
                                   B * KV));
  DRL_TRY(drl_gemm_strided_batched(dev, 1, 0, T, D, g * T, scale, datt, T, g * TT, qp, D, g * TD, 0.0f, dkp, D, TD,
                                   B * KV));
  DRL_TRY(unpermute(s, dq, dqp, row_start, B, T, H, D));
  DRL_TRY(unpermute(s, dk, dkp, row_start, B, T, KV, D));
  return unpermute(s, dv, dvp, row_start, B, T, KV, D);
}
