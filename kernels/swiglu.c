#include "swiglu.h"

#include "nvtx.h"

drl_status drl_swiglu_forward_cpu(float *out, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for schedule(static) if (n > DRL_OMP_MIN_MATH)
  for (int64_t i = 0; i < n; ++i) out[i] = drl_swiglu_elem(gate[i], up[i]);
  return DRL_OK;
}

drl_status drl_swiglu_backward_cpu(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                   int64_t n) {
#pragma omp parallel for schedule(static) if (n > DRL_OMP_MIN_MATH)
  for (int64_t i = 0; i < n; ++i) drl_swiglu_backward_elem(dout[i], gate[i], up[i], &dgate[i], &dup[i]);
  return DRL_OK;
}

drl_status drl_swiglu_forward(const drl_device *dev, float *out, const float *gate, const float *up, int64_t n) {
  DRL_RANGE("swiglu_forward");
  if (n < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_swiglu_forward: negative length %lld", (long long)n);
  if (n == 0) return DRL_OK;
  if (!out || !gate || !up)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_swiglu_forward: NULL buffer (out %p, gate %p, up %p)", (void *)out,
                    (const void *)gate, (const void *)up);
  DRL_DISPATCH_CUDA(dev, drl_swiglu_forward_cuda(dev, out, gate, up, n));
  return drl_swiglu_forward_cpu(out, gate, up, n);
}

drl_status drl_swiglu_backward(const drl_device *dev, float *dgate, float *dup, const float *dout, const float *gate,
                               const float *up, int64_t n) {
  DRL_RANGE("swiglu_backward");
  if (n < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_swiglu_backward: negative length %lld", (long long)n);
  if (n == 0) return DRL_OK;
  if (!dgate || !dup || !dout || !gate || !up)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_swiglu_backward: NULL buffer (dgate %p, dup %p, dout %p, gate %p, up %p)",
                    (void *)dgate, (void *)dup, (const void *)dout, (const void *)gate, (const void *)up);
  DRL_DISPATCH_CUDA(dev, drl_swiglu_backward_cuda(dev, dgate, dup, dout, gate, up, n));
  return drl_swiglu_backward_cpu(dgate, dup, dout, gate, up, n);
}
