/* CUDA SDE step, log-probability and backward over the shared math of sde.h. The step and the log-probability run one
 * thread per row (the sum over d is sequential in double by contract, and the step's noise, mean and density come out
 * of the one drl_sde_row pass, which also makes x_next == x safe); the backward has no reduction and runs one thread
 * per element. No atomics: bit-identical to the CPU. */
#include <cuda_runtime.h>

#include "check.h"
#include "cuda_launch.cuh"
#include "sde.h"

static __global__ void sde_step_kernel(float *x_next, float *logp, const float *x, const float *v, const float *t,
                                       const float *dt, const float *sigma, const uint64_t *noise_index,
                                       drl_rng_stream s, int64_t rows, int D, int mean_over_dims) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = r * D;
    float lp = drl_sde_row(x_next + o, x + o, v + o, t[r], dt[r], sigma[r], &s, noise_index[r] * (uint64_t)D, D,
                           mean_over_dims);
    if (logp) logp[r] = lp;
  }
}

static __global__ void sde_logprob_kernel(float *logp, const float *x_next, const float *x, const float *v,
                                          const float *t, const float *dt, const float *sigma, int64_t rows, int D,
                                          int mean_over_dims) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = r * D;
    logp[r] = drl_sde_logprob_row(x_next + o, x + o, v + o, t[r], dt[r], sigma[r], D, mean_over_dims);
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
  sde_step_kernel<<<drl_grid_for(rows, 128, 8192), 128, 0, DRL_STREAM(dev)>>>(x_next, logp, x, v, t, dt, sigma,
                                                                             noise_index, s, rows, D, mean_over_dims);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_sde_logprob_cuda(const drl_device *dev, float *logp, const float *x_next, const float *x,
                                           const float *v, const float *t, const float *dt, const float *sigma,
                                           int64_t rows, int D, int mean_over_dims) {
  if (rows <= 0) return DRL_OK;
  sde_logprob_kernel<<<drl_grid_for(rows, 128, 8192), 128, 0, DRL_STREAM(dev)>>>(logp, x_next, x, v, t, dt, sigma,
                                                                                rows, D, mean_over_dims);
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
