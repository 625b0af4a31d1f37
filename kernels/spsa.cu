/* CUDA SPSA: one thread per block of four flat indices (one Philox block per contribution), grid-stride; the math is
 * spsa.h's, shared with the CPU. The update passes its contributions by value, DRL_SPSA_BATCH per launch, so it
 * needs no device allocation; launches on one stream run in order, so every element still takes its contributions
 * in the given order, and theta is read and written once per batch. */
#include <cuda_runtime.h>

#include "check.h"
#include "cuda_launch.cuh"
#include "spsa.h"

typedef struct spsa_batch {
  drl_spsa_contrib c[DRL_SPSA_BATCH];
  int count;
} spsa_batch;

static __global__ void spsa_perturb_kernel(float *out, const float *theta, int64_t n, uint64_t offset,
                                           drl_spsa_stream s, uint32_t q, float coef) {
  uint64_t first = offset / 4, blocks = (offset + (uint64_t)n - 1) / 4 - first + 1;
  uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t j = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; j < blocks; j += stride) {
    uint64_t b = first + j;
    int lo, hi;
    drl_spsa_block_span(b, offset, n, &lo, &hi);
    float z[4];
    drl_spsa_z4(s, q, b, z);
    int64_t base = (int64_t)(4 * b - offset);
#pragma unroll
    for (int k = 0; k < 4; ++k) /* constant indices keep z in registers */
      if (k >= lo && k < hi) out[base + k] = drl_spsa_update_elem(theta[base + k], coef, z[k]);
  }
}

/* The batch is indexed in place (uniform across the warp, served from the constant bank), never copied per thread. */
static __global__ void spsa_apply_kernel(float *theta, int64_t n, uint64_t offset, drl_spsa_stream s,
                                         const spsa_batch batch) {
  uint64_t first = offset / 4, blocks = (offset + (uint64_t)n - 1) / 4 - first + 1;
  uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t j = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; j < blocks; j += stride) {
    uint64_t b = first + j;
    int lo, hi;
    drl_spsa_block_span(b, offset, n, &lo, &hi);
    int64_t base = (int64_t)(4 * b - offset);
    /* Constant indices keep t and z in registers; words outside [lo, hi) are computed on 0 and dropped. */
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int k = 0; k < 4; ++k)
      if (k >= lo && k < hi) t[k] = theta[base + k];
    for (int c = 0; c < batch.count; ++c) {
      float z[4];
      drl_spsa_z4(s, batch.c[c].q, b, z);
#pragma unroll
      for (int k = 0; k < 4; ++k) t[k] = drl_spsa_update_elem(t[k], batch.c[c].coef, z[k]);
    }
#pragma unroll
    for (int k = 0; k < 4; ++k)
      if (k >= lo && k < hi) theta[base + k] = t[k];
  }
}

/* Threads per launch are blocks of four elements. */
static int grid_for_blocks(int64_t n, uint64_t offset) {
  int64_t blocks = (int64_t)((offset + (uint64_t)n - 1) / 4 - offset / 4 + 1);
  return drl_grid_for(blocks, 256, 8192);
}

extern "C" drl_status drl_spsa_perturb_cuda(const drl_device *dev, float *out, const float *theta, int64_t n,
                                            uint64_t offset, drl_spsa_stream s, uint32_t q, float coef) {
  if (n <= 0) return DRL_OK;
  spsa_perturb_kernel<<<grid_for_blocks(n, offset), 256, 0, DRL_STREAM(dev)>>>(out, theta, n, offset, s, q, coef);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_spsa_apply_cuda(const drl_device *dev, float *theta, int64_t n, uint64_t offset,
                                          drl_spsa_stream s, const drl_spsa_contrib *contribs, int count) {
  if (n <= 0 || count <= 0) return DRL_OK;
  int grid = grid_for_blocks(n, offset);
  for (int start = 0; start < count; start += DRL_SPSA_BATCH) {
    spsa_batch batch;
    batch.count = count - start < DRL_SPSA_BATCH ? count - start : DRL_SPSA_BATCH;
    for (int c = 0; c < batch.count; ++c) batch.c[c] = contribs[start + c];
    spsa_apply_kernel<<<grid, 256, 0, DRL_STREAM(dev)>>>(theta, n, offset, s, batch);
    CUDA_CHECK(cudaGetLastError());
  }
  return DRL_OK;
}
