/* CUDA rng_fill: one thread per Philox block of four elements; the math is drl_rng_fill_store, shared with the CPU. */
#include <cuda_runtime.h>

#include "check.h"
#include "rng_fill.h"

static __global__ void rng_fill_kernel(uint32_t *out, uint64_t n, drl_rng_stream s, uint64_t offset,
                                       drl_rng_dist dist) {
  uint64_t first = offset / 4, blocks = (offset + n - 1) / 4 - first + 1;
  for (uint64_t b = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; b < blocks; b += (uint64_t)gridDim.x * blockDim.x)
    drl_rng_fill_store(s, first + b, dist, offset, n, out);
}

extern "C" drl_status drl_rng_fill_cuda(const drl_device *dev, void *out, uint64_t n, drl_rng_stream s,
                                        uint64_t offset, drl_rng_dist dist) {
  if (n == 0) return DRL_OK;
  const int threads = 256;
  uint64_t want = (n / 4 + 2 + threads - 1) / threads;
  int blocks = (int)(want < 65535 * 8 ? want : 65535 * 8);
  rng_fill_kernel<<<blocks, threads, 0, (cudaStream_t)dev->stream>>>((uint32_t *)out, n, s, offset, dist);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
