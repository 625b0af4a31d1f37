/* The Flow-GRPO SDE step of the flow sampler (DESIGN.md section 6, research note C.1) and its transition log-density.
 *
 * Time runs from t = 1 (noise) to 0 (data); a step goes from t to t + dt, dt < 0. With the rectified-flow velocity v
 * (x_t = (1 - t) x0 + t eps, v = eps - x0), -(x + (1 - t) v) / t is the score, and
 *   mean   = x + [v + sigma^2 / (2 t) (x + (1 - t) v)] dt,      x_next = mean + sigma sqrt(-dt) eps,  eps ~ N(0, I)
 * is the reverse SDE with diffusion sigma whose marginals equal the ODE's (sigma = 0 is the Euler ODE step x + v dt).
 * log pi(x_next | x) is the Gaussian density of that step, summed over the D dims or (the convention of every flow-GRPO
 * code base) averaged over them.
 *
 * Sampling and evaluation share one per-lane function (drl_sde_lane) and one finish (drl_sde_row_logp), and every op
 * is rounded once (float: drl_fadd / drl_fmul / drl_fdiv / drl_fsqrt; double: drl_dadd / dmul / ddiv; log:
 * drl_rng_logf), so the log-probability the trainer evaluates for a sampled x_next is bit-identical to the one the
 * sampler returned (an on-policy ratio of exactly 1), on the CPU and on the GPU alike. A row's sum over d runs in the
 * 32-lane order of lanes.h: the GPU gives a row to a warp, the CPU runs the 32 lanes in a loop. Layouts: x, v,
 * x_next, dv [rows, D]; t, dt, sigma, logp, dlogp, noise_index [rows]. */
#ifndef DRL_SDE_H
#define DRL_SDE_H

#include <stdint.h>

#include "device.h"
#include "exp.h"      /* drl_fdiv, drl_dadd, drl_dmul, drl_ddiv */
#include "hd.h"
#include "lanes.h"    /* DRL_LANES, drl_lane_tree_d: the 32-lane order of the sum over d */
#include "philox.h"   /* drl_fadd, drl_fmul, drl_fsqrt, drl_rng_logf, drl_rng_normal */
#include "rng_fill.h" /* drl_rng_stream */

#ifdef __cplusplus
extern "C" {
#endif

/* x_next[r, d] = mean + sigma[r] sqrt(-dt[r]) eps, eps = drl_rng_normal(s.seed, s.step, s.tag, noise_index[r] * D + d)
 * (each row its own addressed stream, so the draw depends on nothing but the row's index); logp[r] (may be NULL) = the
 * Gaussian log-density of x_next under N(mean, sigma^2 (-dt) I): the sum over d of
 * -(x_next - mean)^2 / (2 sigma^2 (-dt)) - log(sigma sqrt(-dt)) - log(2 pi) / 2, divided by D when mean_over_dims.
 * Rows with sigma[r] == 0 take the ODE step (x_next = mean, logp 0). Per-row t, dt, sigma [rows] and noise_index [rows]
 * (uint64) on dev. The sum over d is accumulated in double in the 32-lane order (lane l takes d = l, l + 32, ... in
 * order; then the tree p[i] += p[i + o], o = 16, 8, 4, 2, 1). x_next may alias x or v (in place).
 * An SDE row needs dt < 0 and sigma sqrt(-dt) a positive normal float; its logp is NaN otherwise. */
drl_status drl_sde_step(const drl_device *dev, float *x_next, float *logp, const float *x, const float *v,
                        const float *t, const float *dt, const float *sigma, const uint64_t *noise_index,
                        drl_rng_stream s, int64_t rows, int D, int mean_over_dims);

/* logp[r] of a given x_next under the mean that (x, v) give (the training pass); the same arithmetic as drl_sde_step,
 * so the log-probability of the sampled x_next is bit-identical to the one drl_sde_step returned. */
drl_status drl_sde_logprob(const drl_device *dev, float *logp, const float *x_next, const float *x, const float *v,
                           const float *t, const float *dt, const float *sigma, int64_t rows, int D,
                           int mean_over_dims);

/* dv[r, d] += dlogp[r] * d logp[r] / d v[r, d] (through the mean: (x_next - mean) / (sigma^2 (-dt)) (/ D) times
 * (1 + sigma^2 (1 - t) / (2 t)) dt); rows with sigma 0 add nothing. */
drl_status drl_sde_logprob_backward(const drl_device *dev, float *dv, const float *dlogp, const float *x_next,
                                    const float *x, const float *v, const float *t, const float *dt,
                                    const float *sigma, int64_t rows, int D, int mean_over_dims);

/* Host helper: the time grid t_k, k = 0..T (t_0 = 1, t_T = 0), uniform in k and then shifted,
 * t' = s t / (1 + (s - 1) t) (s = 1: uniform; SD3/FLUX use 3), computed in double and rounded to float. t has T + 1
 * entries; T < 1 writes nothing; shift > 0. */
void drl_time_grid(float *t, int T, float shift);

drl_status drl_sde_step_cpu(float *x_next, float *logp, const float *x, const float *v, const float *t,
                            const float *dt, const float *sigma, const uint64_t *noise_index, drl_rng_stream s,
                            int64_t rows, int D, int mean_over_dims);
drl_status drl_sde_logprob_cpu(float *logp, const float *x_next, const float *x, const float *v, const float *t,
                               const float *dt, const float *sigma, int64_t rows, int D, int mean_over_dims);
drl_status drl_sde_logprob_backward_cpu(float *dv, const float *dlogp, const float *x_next, const float *x,
                                        const float *v, const float *t, const float *dt, const float *sigma,
                                        int64_t rows, int D, int mean_over_dims);
drl_status drl_sde_step_cuda(const drl_device *dev, float *x_next, float *logp, const float *x, const float *v,
                             const float *t, const float *dt, const float *sigma, const uint64_t *noise_index,
                             drl_rng_stream s, int64_t rows, int D, int mean_over_dims);
drl_status drl_sde_logprob_cuda(const drl_device *dev, float *logp, const float *x_next, const float *x,
                                const float *v, const float *t, const float *dt, const float *sigma, int64_t rows,
                                int D, int mean_over_dims);
drl_status drl_sde_logprob_backward_cuda(const drl_device *dev, float *dv, const float *dlogp, const float *x_next,
                                         const float *x, const float *v, const float *t, const float *dt,
                                         const float *sigma, int64_t rows, int D, int mean_over_dims);

#ifdef __cplusplus
}
#endif

/* ---- the math shared by both implementations ---- */

/* log(2 pi) / 2 to double precision. */
#define DRL_SDE_HALF_LOG_2PI 0.91893853320467274178

/* sigma of the Flow-GRPO step: a * g * sqrt(t / (1 - min(t, t_cap))) (t_cap < 1 keeps t = 1 finite). */
static inline DRL_HD float drl_sde_sigma(float a, float g, float t, float t_cap) {
  float tc = t < t_cap ? t : t_cap;
  return drl_fmul(drl_fmul(a, g), drl_fsqrt(drl_fdiv(t, drl_fadd(1.0f, -tc))));
}

/* sigma^2 / (2 t): the weight of the score term in the mean (2 t is exact). */
static inline DRL_HD float drl_sde_score_coef(float t, float sigma) {
  return drl_fdiv(drl_fmul(sigma, sigma), drl_fadd(t, t));
}

/* The SDE mean of one element: x + [v + sigma^2 / (2 t) * (x + (1 - t) v)] dt, dt < 0; sigma = 0 is the ODE step
 * x + v dt. */
static inline DRL_HD float drl_sde_mean_elem(float x, float v, float t, float dt, float sigma) {
  if (sigma == 0.0f) return drl_fadd(x, drl_fmul(v, dt)); /* exactly Euler, and no 0 / 0 at t = 0 */
  float w = drl_fadd(x, drl_fmul(drl_fadd(1.0f, -t), v)); /* x + (1 - t) v = -t * score */
  float drift = drl_fadd(v, drl_fmul(drl_sde_score_coef(t, sigma), w));
  return drl_fadd(x, drl_fmul(drift, dt));
}

/* The step's standard deviation sigma sqrt(-dt): the same float scales the noise and normalises the density. */
static inline DRL_HD float drl_sde_std(float sigma, float dt) { return drl_fmul(sigma, drl_fsqrt(-dt)); }

/* The row's log-density from sumsq = sum over d of (x_next - mean)^2 (double, 32-lane order):
 * -sumsq / (2 sd^2) - D (log sd + log(2 pi) / 2), divided by D when mean_over_dims; rounded to float once.
 * sd^2 is exact in double (a product of two floats). sd may exceed 1 (sigma is large near t = 1): drl_rng_logf, written
 * for (0, 1], is Cephes' logf on the exponent and mantissa fields and is within 1 ulp of the correctly rounded log for
 * every positive normal float (checked exhaustively). */
static inline DRL_HD float drl_sde_logp_finish(double sumsq, float sd, int D, int mean_over_dims) {
  double var = drl_dmul((double)sd, (double)sd);
  double quad = drl_ddiv(sumsq, drl_dadd(var, var));
  double norm = drl_dmul((double)D, drl_dadd((double)drl_rng_logf(sd), DRL_SDE_HALF_LOG_2PI));
  double lp = drl_dadd(-quad, -norm);
  if (mean_over_dims) lp = drl_ddiv(lp, (double)D);
  return (float)lp;
}

/* Lane `lane` of a row (0 <= lane < DRL_LANES), the single definition of both the sampler and the evaluator, so the two
 * cannot drift. It takes elements d = lane, lane + 32, ... < D in order:
 *   s != NULL (sampling): x_next[d] = mean + sd eps_d is written, eps_d element noise_base + d of stream *s;
 *   s == NULL (evaluation): x_next is only read (the cast in drl_sde_logprob_row drops const for this path).
 * Either way the same x_next bits meet the same mean bits. Returns the lane's double partial of sum (x_next - mean)^2
 * (0 for an ODE row, whose x_next is the Euler step). Element d is read and written by this lane alone, x[d] and v[d]
 * before x_next[d], so x_next may alias x or v however the lanes interleave. */
static inline DRL_HD double drl_sde_lane(float *x_next, const float *x, const float *v, float t, float dt, float sigma,
                                         const drl_rng_stream *s, uint64_t noise_base, int D, int lane) {
  if (sigma == 0.0f) {
    if (s)
      for (int d = lane; d < D; d += DRL_LANES) x_next[d] = drl_sde_mean_elem(x[d], v[d], t, dt, 0.0f);
    return 0.0;
  }
  const float sd = drl_sde_std(sigma, dt);
  double acc = 0.0;
  for (int d = lane; d < D; d += DRL_LANES) {
    float mean = drl_sde_mean_elem(x[d], v[d], t, dt, sigma);
    float y;
    if (s) {
      y = drl_fadd(mean, drl_fmul(sd, drl_rng_normal(s->seed, s->step, s->tag, noise_base + (uint64_t)d)));
      x_next[d] = y;
    } else {
      y = x_next[d];
    }
    double e = drl_dadd((double)y, -(double)mean); /* exact unless y and mean are 2^29 apart */
    acc = drl_dadd(acc, drl_dmul(e, e));
  }
  return acc;
}

/* The row's logp from the lane tree's sumsq: 0 for an ODE row, else drl_sde_logp_finish. */
static inline DRL_HD float drl_sde_row_logp(double sumsq, float dt, float sigma, int D, int mean_over_dims) {
  if (sigma == 0.0f) return 0.0f;
  return drl_sde_logp_finish(sumsq, drl_sde_std(sigma, dt), D, mean_over_dims);
}

/* One row on the CPU: the 32 lanes in order, then the lane tree (the GPU runs the lanes in a warp). Returns logp. */
static inline float drl_sde_row(float *x_next, const float *x, const float *v, float t, float dt, float sigma,
                                const drl_rng_stream *s, uint64_t noise_base, int D, int mean_over_dims) {
  double p[DRL_LANES];
  for (int l = 0; l < DRL_LANES; ++l) /* a lane with no element (l >= D) returns 0.0: skipped for small D */
    p[l] = l < D ? drl_sde_lane(x_next, x, v, t, dt, sigma, s, noise_base, D, l) : 0.0;
  return drl_sde_row_logp(drl_lane_tree_d(p), dt, sigma, D, mean_over_dims);
}

/* The evaluation path of drl_sde_row. */
static inline float drl_sde_logprob_row(const float *x_next, const float *x, const float *v, float t, float dt,
                                        float sigma, int D, int mean_over_dims) {
  return drl_sde_row((float *)x_next, x, v, t, dt, sigma, NULL, 0, D, mean_over_dims);
}

/* The row factor of the backward, in double: dlogp * dmean/dv / sd^2 (/ D), dmean/dv = (1 + coef (1 - t)) dt with the
 * same float coef and 1 - t as drl_sde_mean_elem (d logp / d mean = (x_next - mean) / sd^2 (/ D)). */
static inline DRL_HD double drl_sde_backward_scale(float dlogp, float t, float dt, float sigma, int D,
                                                   int mean_over_dims) {
  float sd = drl_sde_std(sigma, dt);
  double var = drl_dmul((double)sd, (double)sd);
  double dmean_dv = drl_dmul(
      drl_dadd(1.0, drl_dmul((double)drl_sde_score_coef(t, sigma), (double)drl_fadd(1.0f, -t))), (double)dt);
  double scale = drl_ddiv(drl_dmul((double)dlogp, dmean_dv), var);
  return mean_over_dims ? drl_ddiv(scale, (double)D) : scale;
}

/* dv + scale (x_next - mean) for one element of an SDE row (the product rounded to float once, then one float add). */
static inline DRL_HD float drl_sde_backward_elem(float dv, double scale, float x_next, float x, float v, float t,
                                                 float dt, float sigma) {
  float mean = drl_sde_mean_elem(x, v, t, dt, sigma);
  double e = drl_dadd((double)x_next, -(double)mean);
  return drl_fadd(dv, (float)drl_dmul(scale, e));
}

#endif /* DRL_SDE_H */
