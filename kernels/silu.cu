/* CUDA SiLU: grid-stride loops over the shared per-element math of silu.h (bit-identical to the CPU). */
#include <cuda_runtime.h>

#include "check.h"
#include "cuda_launch.cuh"
#include "silu.h"

/* out may alias x, dx may alias dout (or x): each element is read before it is written, by the same thread. */
static __global__ void silu_forward_kernel(float *out, const float *x, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = drl_silu_elem(x[i]);
}

static __global__ void silu_backward_kernel(float *dx, const float *dout, const float *x, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dx[i] = drl_silu_backward_elem(dout[i], x[i]);
}

extern "C" drl_status drl_silu_forward_cuda(const drl_device *dev, float *out, const float *x, int64_t n) {
  if (n <= 0) return DRL_OK;
  silu_forward_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, DRL_STREAM(dev)>>>(out, x, n);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_silu_backward_cuda(const drl_device *dev, float *dx, const float *dout, const float *x,
                                             int64_t n) {
  if (n <= 0) return DRL_OK;
  silu_backward_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, DRL_STREAM(dev)>>>(dx, dout, x, n);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
