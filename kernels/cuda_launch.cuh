/* Launch helpers shared by the CUDA kernels. */
#ifndef DRL_CUDA_LAUNCH_CUH
#define DRL_CUDA_LAUNCH_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "device.h"

/* The device's stream. */
#define DRL_STREAM(dev) ((cudaStream_t)(dev)->stream)

/* Blocks for n work items of per_block each, at most cap: enough to fill any current GPU; the kernels' grid-stride
 * loops cover the rest. */
static inline int drl_grid_for(int64_t n, int per_block, int cap) {
  int64_t want = (n + per_block - 1) / per_block;
  return (int)(want < cap ? want : cap);
}

#endif /* DRL_CUDA_LAUNCH_CUH */
