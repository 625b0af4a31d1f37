/* CUDA SwiGLU: grid-stride loops over the shared per-element math of swiglu.h. */
#include <cuda_runtime.h>

#include "check.h"
#include "cuda_launch.cuh"
#include "swiglu.h"


static __global__ void swiglu_forward_kernel(float *out, const float *gate, const float *up, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = drl_swiglu_elem(gate[i], up[i]);
}

static __global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dout, const float *gate,
                                              const float *up, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float dg, du;
    drl_swiglu_backward_elem(dout[i], gate[i], up[i], &dg, &du);
    dgate[i] = dg;
    dup[i] = du;
  }
}

extern "C" drl_status drl_swiglu_forward_cuda(const drl_device *dev, float *out, const float *gate, const float *up,
                                              int64_t n) {
  if (n <= 0) return DRL_OK;
  swiglu_forward_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, DRL_STREAM(dev)>>>(out, gate, up, n);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_swiglu_backward_cuda(const drl_device *dev, float *dgate, float *dup, const float *dout,
                                               const float *gate, const float *up, int64_t n) {
  if (n <= 0) return DRL_OK;
  swiglu_backward_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, DRL_STREAM(dev)>>>(dgate, dup, dout, gate, up, n);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
