/* AdamW with decoupled weight decay (Loshchilov & Hutter), fp32 state. */
#ifndef DRL_ADAMW_H
#define DRL_ADAMW_H

#include <stdint.h>

#include "device.h"
#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_adamw_hparams {
  float lr, beta1, beta2, eps, weight_decay;
  int step;          /* 1-based, for the bias corrections */
  float grad_scale;  /* gradients are multiplied by this first (clipping, loss scaling) */
} drl_adamw_hparams;

/* One step over n parameters: g = grads*grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * params -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * params). */
drl_status drl_adamw(const drl_device *dev, float *params, const float *grads, float *m, float *v, int64_t n,
                     drl_adamw_hparams hp);

drl_status drl_adamw_cuda(const drl_device *dev, float *params, const float *grads, float *m, float *v, int64_t n,
                          drl_adamw_hparams hp);

#ifdef __cplusplus
}
#endif
#endif /* DRL_ADAMW_H */
