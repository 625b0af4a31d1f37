/* CPU AdamW: one pass over the elements with the shared per-element math (adamw.h); element-wise, so the split
 * across threads cannot change a bit. */
#include "adamw.h"

#include <math.h>

#include "nvtx.h"

drl_adamw_coef drl_adamw_coefficients(drl_adamw_hparams hp) {
  drl_adamw_coef c;
  c.lr = hp.lr;
  c.beta1 = hp.beta1;
  c.beta2 = hp.beta2;
  c.one_minus_beta1 = (float)(1.0 - (double)hp.beta1);
  c.one_minus_beta2 = (float)(1.0 - (double)hp.beta2);
  c.bias1 = (float)(1.0 - pow((double)hp.beta1, (double)hp.step));
  c.bias2 = (float)(1.0 - pow((double)hp.beta2, (double)hp.step));
  c.eps = hp.eps;
  c.weight_decay = hp.weight_decay;
  c.grad_scale = hp.grad_scale;
  return c;
}

static drl_status adamw_cpu(float *params, const float *grads, float *m, float *v, int64_t n, drl_adamw_hparams hp) {
  drl_adamw_coef c = drl_adamw_coefficients(hp);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) drl_adamw_element(&params[i], &m[i], &v[i], grads[i], c);
  return DRL_OK;
}

drl_status drl_adamw(const drl_device *dev, float *params, const float *grads, float *m, float *v, int64_t n,
                     drl_adamw_hparams hp) {
  DRL_RANGE("adamw");
  if (n < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_adamw: negative size %lld", (long long)n);
  if (n > 0 && (!params || !grads || !m || !v))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_adamw: NULL params, grads, m or v");
  if (hp.step < 1) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_adamw: step %d must be >= 1 (1-based)", hp.step);
  if (!(hp.beta1 >= 0.0f && hp.beta1 < 1.0f) || !(hp.beta2 >= 0.0f && hp.beta2 < 1.0f))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_adamw: betas (%g, %g) must lie in [0, 1)", (double)hp.beta1,
                    (double)hp.beta2);
  if (!(hp.eps > 0.0f)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_adamw: eps %g must be positive", (double)hp.eps);
  if (n == 0) return DRL_OK;
  DRL_DISPATCH_CUDA(dev, drl_adamw_cuda(dev, params, grads, m, v, n, hp));
  return adamw_cpu(params, grads, m, v, n, hp);
}

drl_status drl_adamw_layout(const drl_device *dev, const drl_layout *layout, float *params, const float *grads,
                            float *m, float *v, int64_t lo, int64_t hi, drl_adamw_hparams hp) {
  if (lo < 0 || lo > hi || hi > layout->total)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_adamw_layout: range [%lld, %lld) outside %lld elements", (long long)lo,
                    (long long)hi, (long long)layout->total);
  float decay = hp.weight_decay;
  for (int i = 0; i < layout->count; ++i) {
    const drl_tensor_info *t = &layout->tensors[i];
    int64_t a = t->offset > lo ? t->offset : lo, end = t->offset + t->shape[0] * t->shape[1];
    int64_t b = end < hi ? end : hi;
    if (a >= b) continue;
    hp.weight_decay = t->decay ? decay : 0.0f;
    DRL_TRY(drl_adamw(dev, params + a, grads + a, m + (a - lo), v + (a - lo), b - a, hp));
  }
  return DRL_OK;
}
