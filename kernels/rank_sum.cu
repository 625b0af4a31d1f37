/* CUDA rank_sum: one thread per element (for each piece the warp's loads are contiguous), grid-stride; the math is
 * shared with the CPU: drl_tree_sum_unrolled for count <= DRL_TREE_SUM_UNROLLED_MAX (partials in registers), else
 * drl_tree_sum_elem (its stack lives in local memory). Both are the tree of drl_tree_sum_elem, bit for bit. */
#include <cuda_runtime.h>

#include "check.h"
#include "cuda_launch.cuh"
#include "rank_sum.h"

static const int kThreads = 256;

/* out may be exactly in: the thread reads all of element k's pieces before writing out[k]. */
static __global__ void rank_sum_kernel(float *out, const float *in, int count, int64_t n) {
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x)
    out[k] = drl_tree_sum_elem(in + k, n, count);
}

/* count = C known at compile time; out may be exactly in, as above. */
template <int C>
static __global__ void rank_sum_unrolled_kernel(float *out, const float *in, int64_t n) {
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x)
    out[k] = drl_tree_sum_unrolled<C>(in + k, n);
}

template <int C>
static void launch_unrolled(int grid, cudaStream_t st, float *out, const float *in, int64_t n) {
  rank_sum_unrolled_kernel<C><<<grid, kThreads, 0, st>>>(out, in, n);
}

extern "C" drl_status drl_rank_sum_cuda(const drl_device *dev, float *out, const float *in, int count, int64_t n) {
  if (n <= 0) return DRL_OK;
  const int grid = drl_grid_for(n, kThreads, 4096);
  cudaStream_t st = DRL_STREAM(dev);
  static_assert(DRL_TREE_SUM_UNROLLED_MAX == 16, "one case per unrolled count");
  switch (count) {
    case 1: launch_unrolled<1>(grid, st, out, in, n); break;
    case 2: launch_unrolled<2>(grid, st, out, in, n); break;
    case 3: launch_unrolled<3>(grid, st, out, in, n); break;
    case 4: launch_unrolled<4>(grid, st, out, in, n); break;
    case 5: launch_unrolled<5>(grid, st, out, in, n); break;
    case 6: launch_unrolled<6>(grid, st, out, in, n); break;
    case 7: launch_unrolled<7>(grid, st, out, in, n); break;
    case 8: launch_unrolled<8>(grid, st, out, in, n); break;
    case 9: launch_unrolled<9>(grid, st, out, in, n); break;
    case 10: launch_unrolled<10>(grid, st, out, in, n); break;
    case 11: launch_unrolled<11>(grid, st, out, in, n); break;
    case 12: launch_unrolled<12>(grid, st, out, in, n); break;
    case 13: launch_unrolled<13>(grid, st, out, in, n); break;
    case 14: launch_unrolled<14>(grid, st, out, in, n); break;
    case 15: launch_unrolled<15>(grid, st, out, in, n); break;
    case 16: launch_unrolled<16>(grid, st, out, in, n); break;
    default: rank_sum_kernel<<<grid, kThreads, 0, st>>>(out, in, count, n); break;
  }
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
