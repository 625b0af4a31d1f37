/* CPU SDE step, log-probability and its backward: rows in parallel over the shared row math of sde.h. Each row runs
 * inside one thread, its 32 lanes in order and then the lane tree (the GPU warp's order), so the thread count changes
 * no bit. */
#include "sde.h"

#include "nvtx.h"

drl_status drl_sde_step_cpu(float *x_next, float *logp, const float *x, const float *v, const float *t,
                            const float *dt, const float *sigma, const uint64_t *noise_index, drl_rng_stream s,
                            int64_t rows, int D, int mean_over_dims) {
#pragma omp parallel for schedule(static) if (rows * D > DRL_OMP_MIN_HEAVY)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * D;
    float lp = drl_sde_row(x_next + o, x + o, v + o, t[r], dt[r], sigma[r], &s, noise_index[r] * (uint64_t)D, D,
                           mean_over_dims);
    if (logp) logp[r] = lp;
  }
  return DRL_OK;
}

drl_status drl_sde_logprob_cpu(float *logp, const float *x_next, const float *x, const float *v, const float *t,
                               const float *dt, const float *sigma, int64_t rows, int D, int mean_over_dims) {
#pragma omp parallel for schedule(static) if (rows * D > DRL_OMP_MIN_MATH)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * D;
    logp[r] = drl_sde_logprob_row(x_next + o, x + o, v + o, t[r], dt[r], sigma[r], D, mean_over_dims);
  }
  return DRL_OK;
}

drl_status drl_sde_logprob_backward_cpu(float *dv, const float *dlogp, const float *x_next, const float *x,
                                        const float *v, const float *t, const float *dt, const float *sigma,
                                        int64_t rows, int D, int mean_over_dims) {
#pragma omp parallel for schedule(static) if (rows * D > DRL_OMP_MIN_MATH)
  for (int64_t r = 0; r < rows; ++r) {
    if (sigma[r] == 0.0f) continue; /* an ODE step has no density: nothing flows back */
    const int64_t o = r * D;
    const double scale = drl_sde_backward_scale(dlogp[r], t[r], dt[r], sigma[r], D, mean_over_dims);
    for (int d = 0; d < D; ++d)
      dv[o + d] = drl_sde_backward_elem(dv[o + d], scale, x_next[o + d], x[o + d], v[o + d], t[r], dt[r], sigma[r]);
  }
  return DRL_OK;
}

/* ---- dispatching entry points ---- */

static drl_status check_shape(const char *op, int64_t rows, int D) {
  if (rows < 0 || D < 1)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: rows=%lld D=%d (need rows >= 0, D >= 1)", op, (long long)rows, D);
  if (rows > INT64_MAX / D)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: rows=%lld x D=%d overflows the index range", op, (long long)rows, D);
  return DRL_OK;
}

drl_status drl_sde_step(const drl_device *dev, float *x_next, float *logp, const float *x, const float *v,
                        const float *t, const float *dt, const float *sigma, const uint64_t *noise_index,
                        drl_rng_stream s, int64_t rows, int D, int mean_over_dims) {
  DRL_RANGE("sde_step");
  DRL_TRY(check_shape("drl_sde_step", rows, D));
  if (rows == 0) return DRL_OK;
  if (!x_next || !x || !v || !t || !dt || !sigma || !noise_index)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "drl_sde_step: NULL buffer (x_next %p, x %p, v %p, t %p, dt %p, sigma %p, noise_index %p)",
                    (void *)x_next, (const void *)x, (const void *)v, (const void *)t, (const void *)dt,
                    (const void *)sigma, (const void *)noise_index);
  DRL_DISPATCH_CUDA(dev, drl_sde_step_cuda(dev, x_next, logp, x, v, t, dt, sigma, noise_index, s, rows, D,
                                           mean_over_dims));
  return drl_sde_step_cpu(x_next, logp, x, v, t, dt, sigma, noise_index, s, rows, D, mean_over_dims);
}

drl_status drl_sde_logprob(const drl_device *dev, float *logp, const float *x_next, const float *x, const float *v,
                           const float *t, const float *dt, const float *sigma, int64_t rows, int D,
                           int mean_over_dims) {
  DRL_RANGE("sde_logprob");
  DRL_TRY(check_shape("drl_sde_logprob", rows, D));
  if (rows == 0) return DRL_OK;
  if (!logp || !x_next || !x || !v || !t || !dt || !sigma)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "drl_sde_logprob: NULL buffer (logp %p, x_next %p, x %p, v %p, t %p, dt %p, sigma %p)",
                    (void *)logp, (const void *)x_next, (const void *)x, (const void *)v, (const void *)t,
                    (const void *)dt, (const void *)sigma);
  DRL_DISPATCH_CUDA(dev, drl_sde_logprob_cuda(dev, logp, x_next, x, v, t, dt, sigma, rows, D, mean_over_dims));
  return drl_sde_logprob_cpu(logp, x_next, x, v, t, dt, sigma, rows, D, mean_over_dims);
}

drl_status drl_sde_logprob_backward(const drl_device *dev, float *dv, const float *dlogp, const float *x_next,
                                    const float *x, const float *v, const float *t, const float *dt,
                                    const float *sigma, int64_t rows, int D, int mean_over_dims) {
  DRL_RANGE("sde_logprob_backward");
  DRL_TRY(check_shape("drl_sde_logprob_backward", rows, D));
  if (rows == 0) return DRL_OK;
  if (!dv || !dlogp || !x_next || !x || !v || !t || !dt || !sigma)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "drl_sde_logprob_backward: NULL buffer (dv %p, dlogp %p, x_next %p, x %p, v %p, t %p, dt %p, "
                    "sigma %p)",
                    (void *)dv, (const void *)dlogp, (const void *)x_next, (const void *)x, (const void *)v,
                    (const void *)t, (const void *)dt, (const void *)sigma);
  DRL_DISPATCH_CUDA(dev, drl_sde_logprob_backward_cuda(dev, dv, dlogp, x_next, x, v, t, dt, sigma, rows, D,
                                                       mean_over_dims));
  return drl_sde_logprob_backward_cpu(dv, dlogp, x_next, x, v, t, dt, sigma, rows, D, mean_over_dims);
}

void drl_time_grid(float *t, int T, float shift) {
  if (!t || T < 1) return;
  const double s = (double)shift;
  for (int k = 0; k <= T; ++k) {
    double u = (double)(T - k) / (double)T; /* exactly 1 at k = 0 and 0 at k = T */
    t[k] = (float)(s * u / (1.0 + (s - 1.0) * u));
  }
}
