#include "moe.h"

#include <math.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/moe.h"
#include "kernels/nvtx.h"
#include "kernels/swiglu.h"
#include "models/carve.h"

drl_status drl_moe_config_check(const drl_moe_config *c, int C) {
  if (c->experts < 1 || c->experts > 256 || c->top_k < 1 || c->top_k > c->experts)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "moe: %d experts, top %d: need 1 <= top_k <= experts <= 256", c->experts,
                    c->top_k);
  if (c->d_expert < 1 || c->shared_d_ff < 0 || C < 1)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "moe: expert width %d must be >= 1, shared width %d >= 0", c->d_expert,
                    c->shared_d_ff);
  if (!(c->route_scale > 0.0f) || !isfinite(c->route_scale))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "moe: route_scale %g must be positive", (double)c->route_scale);
  return DRL_OK;
}

size_t drl_moe_work_carve(const drl_device *dev, const drl_moe_config *c, int C, int64_t R, void *base,
                          drl_moe_work *w) {
  drl_carve cv = {(char *)base, 0};
  size_t E = (size_t)c->experts, K = (size_t)c->top_k, F = (size_t)c->d_expert, Fs = (size_t)c->shared_d_ff;
  size_t r = (size_t)R, rk = r * K, f = sizeof(float), i = sizeof(int32_t);
  memset(w, 0, sizeof *w);
  w->logits = (float *)drl_carve_take(&cv, r * E * f);
  w->scores = (float *)drl_carve_take(&cv, r * E * f);
  w->gates = (float *)drl_carve_take(&cv, rk * f);
  w->sel = (int32_t *)drl_carve_take(&cv, rk * i);
  w->order = (int32_t *)drl_carve_take(&cv, rk * i);
  w->slot = (int32_t *)drl_carve_take(&cv, rk * i);
  w->x = (float *)drl_carve_take(&cv, rk * (size_t)C * f);
  w->g = (float *)drl_carve_take(&cv, rk * F * f);
  w->u = (float *)drl_carve_take(&cv, rk * F * f);
  w->h = (float *)drl_carve_take(&cv, rk * F * f);
  w->y = (float *)drl_carve_take(&cv, rk * (size_t)C * f);
  w->sg = (float *)drl_carve_take(&cv, r * Fs * f);
  w->su = (float *)drl_carve_take(&cv, r * Fs * f);
  w->sh = (float *)drl_carve_take(&cv, r * Fs * f);
  /* >= 0: drl_transformer_create refuses the sizes CUB cannot handle */
  w->dispatch = drl_carve_take(&cv, (size_t)drl_moe_dispatch_scratch_bytes(dev, R, c->top_k, c->experts));
  return cv.used;
}

size_t drl_moe_grad_work_carve(const drl_moe_config *c, int C, int64_t R, void *base, drl_moe_grad_work *w) {
  drl_carve cv = {(char *)base, 0};
  size_t E = (size_t)c->experts, K = (size_t)c->top_k, F = (size_t)c->d_expert, Fs = (size_t)c->shared_d_ff;
  size_t r = (size_t)R, rk = r * K, f = sizeof(float);
  w->dy = (float *)drl_carve_take(&cv, rk * (size_t)C * f);
  w->dx = (float *)drl_carve_take(&cv, rk * (size_t)C * f);
  w->dh = (float *)drl_carve_take(&cv, rk * F * f);
  w->dg = (float *)drl_carve_take(&cv, rk * F * f);
  w->du = (float *)drl_carve_take(&cv, rk * F * f);
  w->dgates = (float *)drl_carve_take(&cv, rk * f);
  w->dlogits = (float *)drl_carve_take(&cv, r * E * f);
  w->dsh = (float *)drl_carve_take(&cv, r * Fs * f);
  w->dsg = (float *)drl_carve_take(&cv, r * Fs * f);
  w->dsu = (float *)drl_carve_take(&cv, r * Fs * f);
  return cv.used;
}

drl_status drl_moe_forward(const drl_device *d, const drl_moe_config *c, int C, const drl_moe_weights *w,
                           const float *bias, const float *x, float *out, int64_t R, drl_moe_work *wk) {
  DRL_RANGE("moe_forward");
  int E = c->experts, K = c->top_k, F = c->d_expert, Fs = c->shared_d_ff;
  wk->R = R;
  DRL_TRY(drl_matmul_forward(d, wk->logits, x, w->router, (int)R, C, E, 0));
  DRL_TRY(drl_moe_route(d, wk->scores, wk->sel, wk->gates, wk->logits, bias, R, E, K, c->normalize, c->route_scale));
  DRL_TRY(drl_moe_dispatch(d, wk->order, wk->slot, wk->offsets, wk->sel, R, K, E, wk->dispatch));
  DRL_TRY(drl_moe_gather(d, wk->x, x, wk->order, R, K, C));
  /* One SwiGLU per expert over its packed rows (a grouped GEMM as a loop: experts are few, rows many). */
  for (int e = 0; e < E; ++e) {
    int64_t p = wk->offsets[e];
    int n = (int)(wk->offsets[e + 1] - p);
    if (n == 0) continue;
    float *xe = wk->x + p * C, *ge = wk->g + p * F, *ue = wk->u + p * F, *he = wk->h + p * F, *ye = wk->y + p * C;
    DRL_TRY(drl_matmul_forward(d, ge, xe, w->w_gate + (size_t)e * F * C, n, C, F, 0));
    DRL_TRY(drl_matmul_forward(d, ue, xe, w->w_up + (size_t)e * F * C, n, C, F, 0));
    DRL_TRY(drl_swiglu_forward(d, he, ge, ue, (int64_t)n * F));
    DRL_TRY(drl_matmul_forward(d, ye, he, w->w_down + (size_t)e * C * F, n, F, C, 0));
  }
  DRL_TRY(drl_moe_combine(d, out, wk->y, wk->slot, wk->gates, R, K, C));
  if (Fs > 0) {
    DRL_TRY(drl_matmul_forward(d, wk->sg, x, w->shared_gate, (int)R, C, Fs, 0));
    DRL_TRY(drl_matmul_forward(d, wk->su, x, w->shared_up, (int)R, C, Fs, 0));
    DRL_TRY(drl_swiglu_forward(d, wk->sh, wk->sg, wk->su, R * Fs));
    DRL_TRY(drl_matmul_forward(d, out, wk->sh, w->shared_down, (int)R, Fs, C, 1));
  }
  return DRL_OK;
}

drl_status drl_moe_backward(const drl_device *d, const drl_moe_config *c, int C, const drl_moe_weights *w,
                            const drl_moe_weights *g, const float *x, const float *dout, float *dx, int64_t R,
                            const drl_moe_work *wk, drl_moe_grad_work *gw, const float *aux,
                            const uint8_t *row_mask) {
  DRL_RANGE("moe_backward");
  int E = c->experts, K = c->top_k, F = c->d_expert, Fs = c->shared_d_ff;
  if (wk->R != R) return DRL_FAIL(DRL_ERR_INVALID_ARG, "moe: backward of %lld rows after a forward of %lld",
                                  (long long)R, (long long)wk->R);
  /* out += sum_k gates y: d(expert outputs) and d(gates). */
  DRL_TRY(drl_moe_combine_backward(d, gw->dy, gw->dgates, dout, wk->y, wk->slot, wk->gates, R, K, C));
  DRL_TRY(drl_memset(d, gw->dx, 0, (size_t)R * K * C * sizeof(float)));
  for (int e = 0; e < E; ++e) {
    int64_t p = wk->offsets[e];
    int n = (int)(wk->offsets[e + 1] - p);
    if (n == 0) continue;
    size_t wo = (size_t)e * F * C;
    const float *xe = wk->x + p * C, *ge = wk->g + p * F, *ue = wk->u + p * F, *he = wk->h + p * F;
    float *dye = gw->dy + p * C, *dxe = gw->dx + p * C, *dhe = gw->dh + p * F, *dge = gw->dg + p * F,
          *due = gw->du + p * F;
    DRL_TRY(drl_memset(d, dhe, 0, (size_t)n * F * sizeof(float)));
    DRL_TRY(drl_matmul_backward(d, dhe, g->w_down + wo, dye, he, w->w_down + wo, n, F, C));
    DRL_TRY(drl_swiglu_backward(d, dge, due, dhe, ge, ue, (int64_t)n * F));
    DRL_TRY(drl_matmul_backward(d, dxe, g->w_gate + wo, dge, xe, w->w_gate + wo, n, C, F));
    DRL_TRY(drl_matmul_backward(d, dxe, g->w_up + wo, due, xe, w->w_up + wo, n, C, F));
  }
  /* The gather's backward: each token sums its K packed rows, k in order. */
  DRL_TRY(drl_moe_combine(d, dx, gw->dx, wk->slot, NULL, R, K, C));
  /* Router: through the gates (selected experts) and the auxiliary loss, if any; never through the bias. */
  DRL_TRY(drl_moe_route_backward(d, gw->dlogits, gw->dgates, wk->scores, wk->sel, R, E, K, c->normalize,
                                 c->route_scale, aux, row_mask));
  DRL_TRY(drl_matmul_backward(d, dx, g->router, gw->dlogits, x, w->router, (int)R, C, E));
  if (Fs > 0) {
    DRL_TRY(drl_memset(d, gw->dsh, 0, (size_t)R * Fs * sizeof(float)));
    DRL_TRY(drl_matmul_backward(d, gw->dsh, g->shared_down, dout, wk->sh, w->shared_down, (int)R, Fs, C));
    DRL_TRY(drl_swiglu_backward(d, gw->dsg, gw->dsu, gw->dsh, wk->sg, wk->su, R * Fs));
    DRL_TRY(drl_matmul_backward(d, dx, g->shared_gate, gw->dsg, x, w->shared_gate, (int)R, C, Fs));
    DRL_TRY(drl_matmul_backward(d, dx, g->shared_up, gw->dsu, x, w->shared_up, (int)R, C, Fs));
  }
  return DRL_OK;
}

void drl_moe_bias_update(float *bias, const double *counts, int E, float u, drl_moe_bias_rule rule, int center) {
  double total = 0.0, step[256], mean_step = 0.0;
  for (int i = 0; i < E; ++i) total += counts[i];
  if (!(total > 0.0) || E < 1 || E > 256) return;
  double mean = total / E;
  for (int i = 0; i < E; ++i) {
    double err = mean - counts[i]; /* > 0: under-loaded, so its bias rises */
    step[i] = rule == DRL_MOE_BIAS_SIGN ? (double)u * (double)((err > 0) - (err < 0)) : (double)u * err / mean;
    mean_step += step[i];
  }
  mean_step /= E;
  for (int i = 0; i < E; ++i) bias[i] += (float)(center ? step[i] - mean_step : step[i]);
}

double drl_moe_maxvio(const double *counts, int E) {
  double total = 0.0, max = 0.0;
  for (int i = 0; i < E; ++i) {
    total += counts[i];
    if (counts[i] > max) max = counts[i];
  }
  if (!(total > 0.0)) return 0.0;
  double mean = total / E;
  return (max - mean) / mean;
}
