/* CUDA SDE step, log-probability and backward over the shared math of sde.h. The step and the log-probability run one
 * warp per row: lane l runs drl_sde_lane on d = l, l + 32, ... (the step's noise, mean and residual in one pass), the
 * double partials meet in the warp butterfly of lanes.h, the order of the CPU's lane tree, and lane 0 finishes the
 * row. The backward has no reduction and runs one thread per element. No atomics: bit-identical to the CPU. */
#include <cuda_runtime.h>

#include "check.h"
#include "cuda_launch.cuh"
#include "sde.h"

static_assert(DRL_LANES == 32, "the lane order is the warp's");

static const int kThreads = 256; /* 8 warps, so 8 rows per block in the row kernels */

/* Rows are warp-uniform, so every lane of a warp takes part in each shuffle. x_next may alias x or v: each element
 * is read and then written by one lane (drl_sde_lane), and no lane touches another's elements. */
static __global__ void sde_step_kernel(float *x_next, float *logp, const float *x, const float *v, const float *t,
                                       const float *dt, const float *sigma, const uint64_t *noise_index,
                                       drl_rng_stream s, int64_t rows, int D, int mean_over_dims) {
  const int lane = threadIdx.x % DRL_LANES, warps = blockDim.x / DRL_LANES;
  for (int64_t r = (int64_t)blockIdx.x * warps + threadIdx.x / DRL_LANES; r < rows; r += (int64_t)gridDim.x * warps) {
    const int64_t o = r * D;
    const float dtr = dt[r], sg = sigma[r];
    double part = drl_sde_lane(x_next + o, x + o, v + o, t[r], dtr, sg, &s, noise_index[r] * (uint64_t)D, D, lane);
    double sumsq = drl_warp_tree_d(part);
    if (lane == 0 && logp) logp[r] = drl_sde_row_logp(sumsq, dtr, sg, D, mean_over_dims);
  }
}

static __global__ void sde_logprob_kernel(float *logp, const float *x_next, const float *x, const float *v,
                                          const float *t, const float *dt, const float *sigma, int64_t rows, int D,
                                          int mean_over_dims) {
  const int lane = threadIdx.x % DRL_LANES, warps = blockDim.x / DRL_LANES;
  for (int64_t r = (int64_t)blockIdx.x * warps + threadIdx.x / DRL_LANES; r < rows; r += (int64_t)gridDim.x * warps) {
    const int64_t o = r * D;
    const float dtr = dt[r], sg = sigma[r];
    /* evaluation (no stream): x_next is only read */
    double part = drl_sde_lane((float *)(x_next + o), x + o, v + o, t[r], dtr, sg, NULL, 0, D, lane);
    double sumsq = drl_warp_tree_d(part);
    if (lane == 0) logp[r] = drl_sde_row_logp(sumsq, dtr, sg, D, mean_over_dims);
  }
}

static __global__ void sde_backward_kernel(float *dv, const float *dlogp, const float *x_next, const float *x,
                                           const float *v, const float *t, const float *dt, const float *sigma,
                                           int64_t n, int D, int mean_over_dims) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / D;
    const float sg = sigma[r];
    if (sg == 0.0f) continue; /* an ODE step has no density: nothing flows back */
    const double scale = drl_sde_backward_scale(dlogp[r], t[r], dt[r], sg, D, mean_over_dims);
    dv[i] = drl_sde_backward_elem(dv[i], scale, x_next[i], x[i], v[i], t[r], dt[r], sg);
  }
}

extern "C" drl_status drl_sde_step_cuda(const drl_device *dev, float *x_next, float *logp, const float *x,
                                        const float *v, const float *t, const float *dt, const float *sigma,
                                        const uint64_t *noise_index, drl_rng_stream s, int64_t rows, int D,
                                        int mean_over_dims) {
  if (rows <= 0) return DRL_OK;
  sde_step_kernel<<<drl_grid_for(rows, kThreads / DRL_LANES, 8192), kThreads, 0, DRL_STREAM(dev)>>>(
      x_next, logp, x, v, t, dt, sigma, noise_index, s, rows, D, mean_over_dims);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_sde_logprob_cuda(const drl_device *dev, float *logp, const float *x_next, const float *x,
                                           const float *v, const float *t, const float *dt, const float *sigma,
                                           int64_t rows, int D, int mean_over_dims) {
  if (rows <= 0) return DRL_OK;
  sde_logprob_kernel<<<drl_grid_for(rows, kThreads / DRL_LANES, 8192), kThreads, 0, DRL_STREAM(dev)>>>(
      logp, x_next, x, v, t, dt, sigma, rows, D, mean_over_dims);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_sde_logprob_backward_cuda(const drl_device *dev, float *dv, const float *dlogp,
                                                    const float *x_next, const float *x, const float *v,
                                                    const float *t, const float *dt, const float *sigma,
                                                    int64_t rows, int D, int mean_over_dims) {
  int64_t n = rows * D;
  if (n <= 0) return DRL_OK;
  sde_backward_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, DRL_STREAM(dev)>>>(dv, dlogp, x_next, x, v, t, dt, sigma,
                                                                              n, D, mean_over_dims);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
