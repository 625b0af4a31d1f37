/* CPU SiLU: elementwise over the shared math of silu.h (no reductions, so any thread count gives the same bits). */
#include "silu.h"

#include "nvtx.h"

drl_status drl_silu_forward_cpu(float *out, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > DRL_OMP_MIN_CHEAP)
  for (int64_t i = 0; i < n; ++i) out[i] = drl_silu_elem(x[i]);
  return DRL_OK;
}

drl_status drl_silu_backward_cpu(float *dx, const float *dout, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > DRL_OMP_MIN_CHEAP)
  for (int64_t i = 0; i < n; ++i) dx[i] = drl_silu_backward_elem(dout[i], x[i]);
  return DRL_OK;
}

/* n < 0 is a caller bug; NULL buffers are accepted only when there is nothing to touch. */
static drl_status check_n(const char *op, int64_t n, int null_buffer) {
  if (n < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: negative length %lld", op, (long long)n);
  if (n > 0 && null_buffer)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: NULL buffer for %lld elements", op, (long long)n);
  return DRL_OK;
}

drl_status drl_silu_forward(const drl_device *dev, float *out, const float *x, int64_t n) {
  DRL_RANGE("silu_forward");
  DRL_TRY(check_n("drl_silu_forward", n, !out || !x));
  if (n == 0) return DRL_OK;
  DRL_DISPATCH_CUDA(dev, drl_silu_forward_cuda(dev, out, x, n));
  return drl_silu_forward_cpu(out, x, n);
}

drl_status drl_silu_backward(const drl_device *dev, float *dx, const float *dout, const float *x, int64_t n) {
  DRL_RANGE("silu_backward");
  DRL_TRY(check_n("drl_silu_backward", n, !dx || !dout || !x));
  if (n == 0) return DRL_OK;
  DRL_DISPATCH_CUDA(dev, drl_silu_backward_cuda(dev, dx, dout, x, n));
  return drl_silu_backward_cpu(dx, dout, x, n);
}
