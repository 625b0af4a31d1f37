/* CUDA elementwise ops: grid-stride loops over the shared per-element math of elementwise.h. */
#include <cuda_runtime.h>

#include "check.h"
#include "cuda_launch.cuh"
#include "elementwise.h"


/* out may alias a or b: each element is read before it is written, by the same thread. */
static __global__ void add_kernel(float *out, const float *a, const float *b, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = drl_add_elem(a[i], b[i]);
}

static __global__ void axpy_kernel(float *y, float alpha, const float *x, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = drl_axpy_elem(y[i], alpha, x[i]);
}

static __global__ void scale_kernel(float *x, float s, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    x[i] = drl_scale_elem(x[i], s);
}

extern "C" drl_status drl_add_cuda(const drl_device *dev, float *out, const float *a, const float *b, int64_t n) {
  if (n <= 0) return DRL_OK;
  add_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, DRL_STREAM(dev)>>>(out, a, b, n);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_axpy_cuda(const drl_device *dev, float *y, float alpha, const float *x, int64_t n) {
  if (n <= 0) return DRL_OK;
  axpy_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, DRL_STREAM(dev)>>>(y, alpha, x, n);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_scale_cuda(const drl_device *dev, float *x, float s, int64_t n) {
  if (n <= 0) return DRL_OK;
  scale_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, DRL_STREAM(dev)>>>(x, s, n);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
