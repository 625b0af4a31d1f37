/* CUDA deterministic reductions in the layout of reduce.h: one block of DRL_REDUCE_LANES threads per chunk (thread l
 * is lane l, so the loads are coalesced), the lane tree in shared memory and then warp shuffles (the same pairs as
 * drl_reduce_tree), and one final block over the partials. Bit-identical to the CPU. */
#include <cuda_runtime.h>

#include "check.h"
#include "reduce.h"

#define FULL_MASK 0xffffffffu

/* The lane tree over one value per thread (blockDim.x == DRL_REDUCE_LANES); thread 0 returns the total. */
static __device__ double block_tree(double v) {
  __shared__ double acc[DRL_REDUCE_LANES];
  int l = threadIdx.x;
  acc[l] = v;
  __syncthreads();
  for (int s = DRL_REDUCE_LANES / 2; s >= 32; s >>= 1) {
    if (l < s) acc[l] = drl_dadd(acc[l], acc[l + s]);
    __syncthreads();
  }
  if (l < 32) { /* s = 16 .. 1: lane l adds lane l + s, exactly the sequential tree's pairs */
    v = acc[l];
    for (int s = 16; s > 0; s >>= 1) v = drl_dadd(v, __shfl_down_sync(FULL_MASK, v, s));
  }
  return v;
}

static __global__ void sumsq_chunks_kernel(const float *x, int64_t n, int64_t chunks, double *partial) {
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    double v = block_tree(drl_sumsq_lane(x, n, c, threadIdx.x));
    if (threadIdx.x == 0) partial[c] = v;
    __syncthreads(); /* the next chunk reuses the shared tree */
  }
}

static __global__ void sum_partials_kernel(const double *partial, int64_t chunks, double *result) {
  double v = block_tree(drl_sum_lane(partial, chunks, threadIdx.x));
  if (threadIdx.x == 0) *result = v;
}

extern "C" drl_status drl_sum_squares_partials_cuda(const drl_device *dev, double *partials, const float *x,
                                                    int64_t n, void *scratch) {
  cudaStream_t stream = (cudaStream_t)dev->stream;
  int64_t chunks = (n + DRL_REDUCE_CHUNK - 1) / DRL_REDUCE_CHUNK;
  int blocks = (int)(chunks < 65535 * 16 ? chunks : 65535 * 16);
  sumsq_chunks_kernel<<<blocks, DRL_REDUCE_LANES, 0, stream>>>(x, n, chunks, (double *)scratch);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaMemcpyAsync(partials, scratch, (size_t)chunks * sizeof(double), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return DRL_OK;
}

extern "C" drl_status drl_sum_squares_cuda(const drl_device *dev, double *out, const float *x, int64_t n,
                                           void *scratch) {
  cudaStream_t stream = (cudaStream_t)dev->stream;
  int64_t chunks = (n + DRL_REDUCE_CHUNK - 1) / DRL_REDUCE_CHUNK;
  double *partial = (double *)scratch, *result = partial + chunks;
  int blocks = (int)(chunks < 65535 * 16 ? chunks : 65535 * 16);
  sumsq_chunks_kernel<<<blocks, DRL_REDUCE_LANES, 0, stream>>>(x, n, chunks, partial);
  CUDA_CHECK(cudaGetLastError());
  sum_partials_kernel<<<1, DRL_REDUCE_LANES, 0, stream>>>(partial, chunks, result);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaMemcpyAsync(out, result, sizeof(double), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return DRL_OK;
}
