/* CUDA time embedding: one thread per (row, frequency) pair over the shared math of time_embed.h; bit-identical to the
 * CPU. */
#include <cuda_runtime.h>

#include "check.h"
#include "cuda_launch.cuh"
#include "time_embed.h"

static __global__ void time_embed_kernel(float *out, const float *t, const float *freq, int64_t n, int half) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i / half;
    int k = (int)(i % half);
    float s, c;
    drl_time_embed_pair(t[r], freq[k], &s, &c);
    out[2 * i] = s; /* out[r, 2k] with row stride 2 half: 2 (r half + k) = 2 i */
    out[2 * i + 1] = c;
  }
}

extern "C" drl_status drl_time_embed_cuda(const drl_device *dev, float *out, const float *t, const float *freq,
                                          int64_t rows, int half) {
  int64_t n = rows * half;
  if (n <= 0) return DRL_OK;
  time_embed_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, DRL_STREAM(dev)>>>(out, t, freq, n, half);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
