/* CUDA bias ops over the shared math of bias.h. The add is a grid-stride loop over elements. The backward must add
 * each column's rows one after another in double (that order is the contract), so one thread owns one column; to keep
 * enough loads in flight for that many sequential adds, a block of 256 threads covers 32 columns: warps 1-7 stage the
 * next tile of rows in shared memory while warp 0 (one lane per column) adds the current tile in row order. No atomics:
 * bit-identical to the CPU. */
#include <cuda_runtime.h>

#include "bias.h"
#include "check.h"
#include "cuda_launch.cuh"

#define BIAS_COLS 32      /* columns per block: one per lane of warp 0 */
#define BIAS_TILE 128     /* rows per shared-memory tile */
#define BIAS_THREADS 256  /* warp 0 adds, the other 7 warps load */

static __global__ void bias_add_kernel(float *y, const float *b, int64_t n, int cols) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = drl_fadd(y[i], b[i % cols]);
}

/* Rows [r0, r0 + BIAS_TILE) of columns [c0, c0 + BIAS_COLS) into tile, by threads first.. of the block (coalesced
 * along the columns; warp 0 then reads one tile row per step, 32 consecutive words: no bank conflicts). */
static __device__ void load_tile(float (*tile)[BIAS_COLS], const float *dy, int64_t rows, int cols, int64_t r0,
                                 int c0, int first) {
  for (int i = (int)threadIdx.x - first; i < BIAS_TILE * BIAS_COLS; i += BIAS_THREADS - first) {
    int rr = i / BIAS_COLS, cc = i % BIAS_COLS;
    int64_t r = r0 + rr;
    int c = c0 + cc;
    tile[rr][cc] = (r < rows && c < cols) ? dy[r * cols + c] : 0.0f;
  }
}

static __global__ void __launch_bounds__(BIAS_THREADS)
    bias_backward_kernel(float *db, const float *dy, int64_t rows, int cols) {
  __shared__ float tile[2][BIAS_TILE][BIAS_COLS];
  const int c0 = blockIdx.x * BIAS_COLS, lane = threadIdx.x;
  const int64_t tiles = (rows + BIAS_TILE - 1) / BIAS_TILE;
  double acc = 0.0;
  load_tile(tile[0], dy, rows, cols, 0, c0, 0);
  __syncthreads();
  for (int64_t k = 0; k < tiles; ++k) {
    if (threadIdx.x >= 32) {
      if (k + 1 < tiles) load_tile(tile[(k + 1) & 1], dy, rows, cols, (k + 1) * BIAS_TILE, c0, 32);
    } else {
      int64_t n = rows - k * BIAS_TILE < BIAS_TILE ? rows - k * BIAS_TILE : BIAS_TILE;
      for (int rr = 0; rr < (int)n; ++rr) acc = drl_bias_acc(acc, tile[k & 1][rr][lane]);
    }
    __syncthreads(); /* tile k is consumed and tile k + 1 is ready */
  }
  if (threadIdx.x < 32 && c0 + lane < cols) db[c0 + lane] = drl_bias_finish(db[c0 + lane], acc);
}

extern "C" drl_status drl_bias_add_cuda(const drl_device *dev, float *y, const float *b, int64_t rows, int cols) {
  int64_t n = rows * cols;
  if (n <= 0) return DRL_OK;
  bias_add_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, DRL_STREAM(dev)>>>(y, b, n, cols);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_bias_backward_cuda(const drl_device *dev, float *db, const float *dy, int64_t rows,
                                             int cols) {
  if (rows <= 0 || cols <= 0) return DRL_OK;
  int blocks = (cols + BIAS_COLS - 1) / BIAS_COLS;
  bias_backward_kernel<<<blocks, BIAS_THREADS, 0, DRL_STREAM(dev)>>>(db, dy, rows, cols);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
