#include "rmsnorm.h"

#include "nvtx.h"

int64_t drl_rmsnorm_scratch_floats(const drl_device *dev, int N, int C) {
  (void)dev; /* the same layout on both backends, so the sums agree bit for bit */
  if (N <= 0 || C <= 0) return 0;
  return (int64_t)((N + DRL_RMSNORM_CHUNK_ROWS - 1) / DRL_RMSNORM_CHUNK_ROWS) * C;
}

drl_status drl_rmsnorm_forward_cpu(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                                   float eps) {
#pragma omp parallel for schedule(static) if ((int64_t)N * C > DRL_OMP_MIN_MATH)
  for (int n = 0; n < N; ++n) {
    const float *x = inp + (int64_t)n * C;
    float *o = out + (int64_t)n * C;
    float r = drl_rmsnorm_rstd(drl_rmsnorm_row_sumsq(x, C), C, eps);
    for (int c = 0; c < C; ++c) o[c] = drl_rmsnorm_out(x[c], r, weight[c]);
    rstd[n] = r;
  }
  return DRL_OK;
}

drl_status drl_rmsnorm_backward_cpu(float *dinp, float *dweight, const float *dout, const float *inp,
                                    const float *weight, const float *rstd, int N, int C, float *scratch) {
  const int R = DRL_RMSNORM_CHUNK_ROWS;
  int nchunks = (N + R - 1) / R;
  /* One pass per chunk: dinp for its rows and the chunk's partial dweight, summed in row order. */
#pragma omp parallel for schedule(static) if ((int64_t)N * C > DRL_OMP_MIN_MATH)
  for (int k = 0; k < nchunks; ++k) {
    float *part = scratch + (int64_t)k * C;
    for (int c = 0; c < C; ++c) part[c] = 0.0f;
    int64_t begin = (int64_t)k * R, end = begin + R < N ? begin + R : N;
    for (int64_t n = begin; n < end; ++n) {
      const float *x = inp + (int64_t)n * C, *d = dout + (int64_t)n * C;
      float *di = dinp + (int64_t)n * C;
      float r = rstd[n];
      float coef = drl_rmsnorm_coef(drl_rmsnorm_row_dot(weight, d, x, C), r, C);
      for (int c = 0; c < C; ++c) {
        di[c] = drl_rmsnorm_dinp(di[c], x[c], weight[c], d[c], r, coef);
        part[c] = drl_rmsnorm_dw_acc(part[c], d[c], x[c], r);
      }
    }
  }
  for (int c = 0; c < C; ++c) dweight[c] = drl_fadd(dweight[c], drl_rmsnorm_dw_combine(scratch, nchunks, C, c));
  return DRL_OK;
}

static drl_status check_sizes(const char *op, int N, int C) {
  if (N < 0 || C < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: negative size N=%d C=%d", op, N, C);
  if (N > 0 && C == 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: C must be positive (N=%d rows of C=0)", op, N);
  return DRL_OK;
}

drl_status drl_rmsnorm_forward(const drl_device *dev, float *out, float *rstd, const float *inp, const float *weight,
                               int N, int C, float eps) {
  DRL_RANGE("rmsnorm_forward");
  DRL_TRY(check_sizes("drl_rmsnorm_forward", N, C));
  if (!(eps >= 0.0f)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_rmsnorm_forward: eps must be >= 0, got %g", eps);
  if (N == 0) return DRL_OK;
  if (!out || !rstd || !inp || !weight)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_rmsnorm_forward: NULL buffer (out %p, rstd %p, inp %p, weight %p)",
                    (void *)out, (void *)rstd, (const void *)inp, (const void *)weight);
  if (out == inp) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_rmsnorm_forward: out may not alias inp");
  DRL_DISPATCH_CUDA(dev, drl_rmsnorm_forward_cuda(dev, out, rstd, inp, weight, N, C, eps));
  return drl_rmsnorm_forward_cpu(out, rstd, inp, weight, N, C, eps);
}

drl_status drl_rmsnorm_backward(const drl_device *dev, float *dinp, float *dweight, const float *dout,
                                const float *inp, const float *weight, const float *rstd, int N, int C,
                                float *scratch) {
  DRL_RANGE("rmsnorm_backward");
  DRL_TRY(check_sizes("drl_rmsnorm_backward", N, C));
  if (N == 0) return DRL_OK;
  if (!dinp || !dweight || !dout || !inp || !weight || !rstd || !scratch)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "drl_rmsnorm_backward: NULL buffer (dinp %p, dweight %p, dout %p, inp %p, weight %p, rstd %p, "
                    "scratch %p; scratch needs drl_rmsnorm_scratch_floats floats)",
                    (void *)dinp, (void *)dweight, (const void *)dout, (const void *)inp, (const void *)weight,
                    (const void *)rstd, (void *)scratch);
  if (dinp == dout) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_rmsnorm_backward: dinp may not alias dout");
  DRL_DISPATCH_CUDA(dev, drl_rmsnorm_backward_cuda(dev, dinp, dweight, dout, inp, weight, rstd, N, C, scratch));
  return drl_rmsnorm_backward_cpu(dinp, dweight, dout, inp, weight, rstd, N, C, scratch);
}
