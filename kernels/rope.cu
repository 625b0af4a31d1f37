/* CUDA RoPE: one thread per rotated pair; the arithmetic is drl_rope_rotate, shared with the CPU, so both give the
 * same bits from the same tables. */
#include <cuda_runtime.h>

#include "check.h"
#include "rope.h"

static __global__ void rope_kernel(float *x, const int32_t *pos, const float *cos_t, const float *sin_t, int64_t N,
                                   int heads, int half, int inverse) {
  int64_t pairs = N * heads * half;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < pairs; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t row = e / half; /* (n, h) */
    int i = (int)(e - row * half);
    int32_t p = pos[row / heads];
    if (p < 0) continue; /* out of contract (the CPU reports it); never read before the tables */
    float c = cos_t[(int64_t)p * half + i], s = sin_t[(int64_t)p * half + i];
    float *r = x + row * 2 * half;
    drl_rope_rotate(&r[i], &r[i + half], c, inverse ? -s : s);
  }
}

extern "C" drl_status drl_rope_cuda(const drl_device *dev, float *x, const int32_t *pos, const float *cos_t,
                                    const float *sin_t, int N, int heads, int D, int inverse) {
  int64_t pairs = (int64_t)N * heads * (D / 2);
  if (pairs == 0) return DRL_OK;
  const int threads = 256;
  int64_t want = (pairs + threads - 1) / threads;
  int blocks = (int)(want < 65535 * 8 ? want : 65535 * 8);
  rope_kernel<<<blocks, threads, 0, (cudaStream_t)dev->stream>>>(x, pos, cos_t, sin_t, N, heads, D / 2, inverse);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
