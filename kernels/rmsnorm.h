/* RMSNorm over the last dimension: out = inp * rstd * weight, rstd = 1 / sqrt(mean(inp^2) + eps).
 * CPU and GPU are bit-identical: every row sum uses the 32-lane order of lanes.h (lane l takes channels l, l+32, ...,
 * then a pairwise tree over the lanes: a CUDA warp's butterfly), every operation is rounded once (no FMA), and the
 * dweight sum over rows goes in fixed chunks of DRL_RMSNORM_CHUNK_ROWS rows, combined in chunk order. */
#ifndef DRL_RMSNORM_H
#define DRL_RMSNORM_H

#include <stdint.h>

#include "device.h"
#include "hd.h"
#include "lanes.h"  /* DRL_LANES, drl_lane_tree_f: the 32-lane order */
#include "philox.h" /* drl_fadd, drl_fmul: explicitly rounded, so nvcc cannot fuse them into an FMA */

#ifdef __cplusplus
extern "C" {
#endif

/* Rows per dweight chunk: fixed, so the sum order never depends on the thread count or the grid. */
#define DRL_RMSNORM_CHUNK_ROWS 32

/* For each of N rows of C: out (may not alias inp) and rstd[row] (saved for the backward). */
drl_status drl_rmsnorm_forward(const drl_device *dev, float *out, float *rstd, const float *inp, const float *weight,
                               int N, int C, float eps);

/* dinp[N,C] += and dweight[C] += the gradients from dout (dinp may not alias dout: dweight reads dout after dinp is
 * written). The dweight sum over rows is deterministic (fixed order on
 * the CPU for any thread count; fixed two-stage tree on the GPU). scratch: drl_rmsnorm_scratch_floats(N, C). */
drl_status drl_rmsnorm_backward(const drl_device *dev, float *dinp, float *dweight, const float *dout,
                                const float *inp, const float *weight, const float *rstd, int N, int C,
                                float *scratch);

/* Scratch floats drl_rmsnorm_backward needs on dev: one partial dweight row per chunk, the same on both backends. */
int64_t drl_rmsnorm_scratch_floats(const drl_device *dev, int N, int C);

drl_status drl_rmsnorm_forward_cpu(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                                   float eps);
drl_status drl_rmsnorm_backward_cpu(float *dinp, float *dweight, const float *dout, const float *inp,
                                    const float *weight, const float *rstd, int N, int C, float *scratch);
drl_status drl_rmsnorm_forward_cuda(const drl_device *dev, float *out, float *rstd, const float *inp,
                                    const float *weight, int N, int C, float eps);
drl_status drl_rmsnorm_backward_cuda(const drl_device *dev, float *dinp, float *dweight, const float *dout,
                                     const float *inp, const float *weight, const float *rstd, int N, int C,
                                     float *scratch);

#ifdef __cplusplus
}
#endif

/* ---- the math shared by both implementations ---- */

/* Lane partial of sum(x^2). */
static inline DRL_HD float drl_rmsnorm_sq_acc(float acc, float x) { return drl_fadd(acc, drl_fmul(x, x)); }

/* Lane partial of sum(weight * dout * x), the row dot of the backward. */
static inline DRL_HD float drl_rmsnorm_dot_acc(float acc, float w, float dout, float x) {
  return drl_fadd(acc, drl_fmul(drl_fmul(w, dout), x));
}

/* rstd = 1 / sqrt(sumsq / C + eps), each step correctly rounded on both sides. */
static inline DRL_HD float drl_rmsnorm_rstd(float sumsq, int C, float eps) {
#ifdef __CUDA_ARCH__
  return __frcp_rn(__fsqrt_rn(__fadd_rn(__fdiv_rn(sumsq, (float)C), eps)));
#else
  return 1.0f / sqrtf(sumsq / (float)C + eps);
#endif
}

static inline DRL_HD float drl_rmsnorm_out(float x, float rstd, float w) { return drl_fmul(drl_fmul(x, rstd), w); }

/* The row constant of the backward: rstd^2 * dot / C. */
static inline DRL_HD float drl_rmsnorm_coef(float dot, float rstd, int C) {
  float t = drl_fmul(drl_fmul(dot, rstd), rstd);
#ifdef __CUDA_ARCH__
  return __fdiv_rn(t, (float)C);
#else
  return t / (float)C;
#endif
}

/* dinp += rstd * (w * dout - x * coef). */
static inline DRL_HD float drl_rmsnorm_dinp(float dinp, float x, float w, float dout, float rstd, float coef) {
  return drl_fadd(dinp, drl_fmul(rstd, drl_fadd(drl_fmul(w, dout), -drl_fmul(x, coef))));
}

/* Row-order partial of dweight: acc + dout * x * rstd. */
static inline DRL_HD float drl_rmsnorm_dw_acc(float acc, float dout, float x, float rstd) {
  return drl_fadd(acc, drl_fmul(drl_fmul(dout, x), rstd));
}

/* sum(x^2) of one row in the 32-lane order (the CPU's loop; the GPU runs the lanes in a warp). */
static inline DRL_HD float drl_rmsnorm_row_sumsq(const float *x, int C) {
  float p[DRL_LANES];
  for (int l = 0; l < DRL_LANES; ++l) p[l] = 0.0f;
  int c0 = 0;
  for (; c0 + DRL_LANES <= C; c0 += DRL_LANES) /* full rounds: a fixed trip count vectorises */
    for (int l = 0; l < DRL_LANES; ++l) p[l] = drl_rmsnorm_sq_acc(p[l], x[c0 + l]);
  for (int l = 0; c0 + l < C; ++l) p[l] = drl_rmsnorm_sq_acc(p[l], x[c0 + l]);
  return drl_lane_tree_f(p);
}

/* sum(w * dout * x) of one row in the 32-lane order. */
static inline DRL_HD float drl_rmsnorm_row_dot(const float *w, const float *dout, const float *x, int C) {
  float p[DRL_LANES];
  for (int l = 0; l < DRL_LANES; ++l) p[l] = 0.0f;
  int c0 = 0;
  for (; c0 + DRL_LANES <= C; c0 += DRL_LANES)
    for (int l = 0; l < DRL_LANES; ++l) p[l] = drl_rmsnorm_dot_acc(p[l], w[c0 + l], dout[c0 + l], x[c0 + l]);
  for (int l = 0; c0 + l < C; ++l) p[l] = drl_rmsnorm_dot_acc(p[l], w[c0 + l], dout[c0 + l], x[c0 + l]);
  return drl_lane_tree_f(p);
}

/* dweight[c] total over the chunk partials, in chunk order. */
static inline DRL_HD float drl_rmsnorm_dw_combine(const float *partials, int nchunks, int C, int c) {
  float acc = partials[c];
  for (int k = 1; k < nchunks; ++k) acc = drl_fadd(acc, partials[(int64_t)k * C + c]);
  return acc;
}

#endif /* DRL_RMSNORM_H */
