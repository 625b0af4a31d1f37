#include "elementwise.h"

#include "nvtx.h"

drl_status drl_add_cpu(float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static) if (n > DRL_OMP_MIN_CHEAP)
  for (int64_t i = 0; i < n; ++i) out[i] = drl_add_elem(a[i], b[i]);
  return DRL_OK;
}

drl_status drl_axpy_cpu(float *y, float alpha, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > DRL_OMP_MIN_CHEAP)
  for (int64_t i = 0; i < n; ++i) y[i] = drl_axpy_elem(y[i], alpha, x[i]);
  return DRL_OK;
}

drl_status drl_scale_cpu(float *x, float s, int64_t n) {
#pragma omp parallel for schedule(static) if (n > DRL_OMP_MIN_CHEAP)
  for (int64_t i = 0; i < n; ++i) x[i] = drl_scale_elem(x[i], s);
  return DRL_OK;
}

/* n < 0 is a caller bug; NULL buffers are accepted only when there is nothing to touch. */
static drl_status check_n(const char *op, int64_t n, int null_buffer) {
  if (n < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: negative length %lld", op, (long long)n);
  if (n > 0 && null_buffer)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: NULL buffer for %lld elements", op, (long long)n);
  return DRL_OK;
}

drl_status drl_add(const drl_device *dev, float *out, const float *a, const float *b, int64_t n) {
  DRL_RANGE("add");
  DRL_TRY(check_n("drl_add", n, !out || !a || !b));
  if (n == 0) return DRL_OK;
  DRL_DISPATCH_CUDA(dev, drl_add_cuda(dev, out, a, b, n));
  return drl_add_cpu(out, a, b, n);
}

drl_status drl_axpy(const drl_device *dev, float *y, float alpha, const float *x, int64_t n) {
  DRL_RANGE("axpy");
  DRL_TRY(check_n("drl_axpy", n, !y || !x));
  if (n == 0) return DRL_OK;
  DRL_DISPATCH_CUDA(dev, drl_axpy_cuda(dev, y, alpha, x, n));
  return drl_axpy_cpu(y, alpha, x, n);
}

drl_status drl_scale(const drl_device *dev, float *x, float s, int64_t n) {
  DRL_RANGE("scale");
  DRL_TRY(check_n("drl_scale", n, !x));
  if (n == 0) return DRL_OK;
  DRL_DISPATCH_CUDA(dev, drl_scale_cuda(dev, x, s, n));
  return drl_scale_cpu(x, s, n);
}
