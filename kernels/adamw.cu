/* CUDA AdamW: a grid-stride loop over the elements with the shared per-element math (adamw.h), whose explicitly
 * rounded operations give the CPU's bits. */
#include <cuda_runtime.h>

#include "adamw.h"
#include "check.h"

static __global__ void adamw_kernel(float *params, const float *grads, float *m, float *v, int64_t n,
                                    drl_adamw_coef c) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float p = params[i], mi = m[i], vi = v[i];
    drl_adamw_element(&p, &mi, &vi, grads[i], c);
    params[i] = p;
    m[i] = mi;
    v[i] = vi;
  }
}

extern "C" drl_status drl_adamw_cuda(const drl_device *dev, float *params, const float *grads, float *m, float *v,
                                     int64_t n, drl_adamw_hparams hp) {
  if (n <= 0) return DRL_OK;
  const int threads = 256;
  int64_t want = (n + threads - 1) / threads;
  int blocks = (int)(want < 65535 * 16 ? want : 65535 * 16); /* the loop strides over the rest */
  adamw_kernel<<<blocks, threads, 0, (cudaStream_t)dev->stream>>>(params, grads, m, v, n,
                                                                  drl_adamw_coefficients(hp));
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
