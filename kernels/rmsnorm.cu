/* CUDA RMSNorm. Row sums: one warp per row, lane l takes channels l, l+32, ..., then a butterfly read from lane 0:
 * the order of drl_lane_tree_f (lanes.h), so the CPU reproduces every bit. dweight: stage 1 sums each chunk of
 * DRL_RMSNORM_CHUNK_ROWS rows per channel in row order into scratch, stage 2 sums the chunks per channel in chunk
 * order. No atomics anywhere: the result never depends on scheduling. */
#include <cuda_runtime.h>

#include "check.h"
#include "cuda_launch.cuh"
#include "rmsnorm.h"

static_assert(DRL_LANES == 32, "the lane order is the warp's");

static const int kThreads = 256; /* 8 warps, so 8 rows per block in the row kernels */

/* Rows are warp-uniform, so every lane of a warp takes part in each shuffle. */
static __global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *inp, const float *weight, int N,
                                              int C, float eps) {
  int lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int64_t n = (int64_t)blockIdx.x * warps + threadIdx.x / 32; n < N; n += (int64_t)gridDim.x * warps) {
    const float *x = inp + n * C;
    float acc = 0.0f;
    for (int c = lane; c < C; c += 32) acc = drl_rmsnorm_sq_acc(acc, x[c]);
    float r = drl_rmsnorm_rstd(drl_warp_tree_f(acc), C, eps);
    float *o = out + n * C;
    for (int c = lane; c < C; c += 32) o[c] = drl_rmsnorm_out(x[c], r, weight[c]);
    if (lane == 0) rstd[n] = r;
  }
}

static __global__ void rmsnorm_dinp_kernel(float *dinp, const float *dout, const float *inp, const float *weight,
                                           const float *rstd, int N, int C) {
  int lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int64_t n = (int64_t)blockIdx.x * warps + threadIdx.x / 32; n < N; n += (int64_t)gridDim.x * warps) {
    const float *x = inp + n * C, *d = dout + n * C;
    float acc = 0.0f;
    for (int c = lane; c < C; c += 32) acc = drl_rmsnorm_dot_acc(acc, weight[c], d[c], x[c]);
    float r = rstd[n];
    float coef = drl_rmsnorm_coef(drl_warp_tree_f(acc), r, C);
    float *di = dinp + n * C;
    for (int c = lane; c < C; c += 32) di[c] = drl_rmsnorm_dinp(di[c], x[c], weight[c], d[c], r, coef);
  }
}

/* Stage 1: partial[k, c] = sum over the rows of chunk k, in row order. Neighbouring threads take neighbouring
 * channels, so every row read is coalesced. */
static __global__ void rmsnorm_dw_partial_kernel(float *partial, const float *dout, const float *inp,
                                                 const float *rstd, int N, int C, int nchunks) {
  int64_t total = (int64_t)nchunks * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int k = (int)(i / C), c = (int)(i % C);
    int64_t begin = (int64_t)k * DRL_RMSNORM_CHUNK_ROWS;
    int64_t end = begin + DRL_RMSNORM_CHUNK_ROWS < N ? begin + DRL_RMSNORM_CHUNK_ROWS : N;
    float acc = 0.0f;
    for (int64_t n = begin; n < end; ++n)
      acc = drl_rmsnorm_dw_acc(acc, dout[n * C + c], inp[n * C + c], rstd[n]);
    partial[i] = acc;
  }
}

/* Stage 2: dweight[c] += the chunk partials in chunk order. */
static __global__ void rmsnorm_dw_combine_kernel(float *dweight, const float *partial, int nchunks, int C) {
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x)
    dweight[c] = drl_fadd(dweight[c], drl_rmsnorm_dw_combine(partial, nchunks, C, c));
}

extern "C" drl_status drl_rmsnorm_forward_cuda(const drl_device *dev, float *out, float *rstd, const float *inp,
                                               const float *weight, int N, int C, float eps) {
  if (N <= 0) return DRL_OK;
  rmsnorm_forward_kernel<<<drl_grid_for(N, kThreads / 32, 8192), kThreads, 0, DRL_STREAM(dev)>>>(out, rstd, inp, weight, N, C, eps);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_rmsnorm_backward_cuda(const drl_device *dev, float *dinp, float *dweight, const float *dout,
                                                const float *inp, const float *weight, const float *rstd, int N, int C,
                                                float *scratch) {
  if (N <= 0 || C <= 0) return DRL_OK;
  int nchunks = (N + DRL_RMSNORM_CHUNK_ROWS - 1) / DRL_RMSNORM_CHUNK_ROWS;
  rmsnorm_dinp_kernel<<<drl_grid_for(N, kThreads / 32, 8192), kThreads, 0, DRL_STREAM(dev)>>>(dinp, dout, inp, weight, rstd, N, C);
  CUDA_CHECK(cudaGetLastError());
  rmsnorm_dw_partial_kernel<<<drl_grid_for((int64_t)nchunks * C, kThreads, 8192), kThreads, 0, DRL_STREAM(dev)>>>(
      scratch, dout, inp, rstd, N, C, nchunks);
  CUDA_CHECK(cudaGetLastError());
  rmsnorm_dw_combine_kernel<<<drl_grid_for(C, kThreads, 8192), kThreads, 0, DRL_STREAM(dev)>>>(dweight, scratch, nchunks, C);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
