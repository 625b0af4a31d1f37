/* CUDA rank_sum: one thread per element (for each piece the warp's loads are contiguous), grid-stride; the math is
 * drl_tree_sum_elem, shared with the CPU. */
#include <cuda_runtime.h>

#include "check.h"
#include "cuda_launch.cuh"
#include "rank_sum.h"

/* out may be exactly in: the thread reads all of element k's pieces before writing out[k]. */
static __global__ void rank_sum_kernel(float *out, const float *in, int count, int64_t n) {
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x)
    out[k] = drl_tree_sum_elem(in + k, n, count);
}

extern "C" drl_status drl_rank_sum_cuda(const drl_device *dev, float *out, const float *in, int count, int64_t n) {
  if (n <= 0) return DRL_OK;
  rank_sum_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, DRL_STREAM(dev)>>>(out, in, count, n);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
