/* The one optimizer step of every phase and the API (DESIGN §7): the global gradient norm, clipping, AdamW with
 * decoupled weight decay on a parameter set, over the ranks of a data-parallel job and its ZeRO-1 shards when given;
 * and the learning-rate schedule. */
#ifndef DRL_OPTIM_H
#define DRL_OPTIM_H

#include <stdint.h>

#include "distributed/dp.h"
#include "engine/config.h"
#include "models/params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_optim_hparams {
  float lr, beta1, beta2, eps, weight_decay;
  float grad_clip; /* clip the global gradient norm to this; 0 = off */
  int step;        /* 1-based */
} drl_optim_hparams;

/* The AdamW hyperparameters of o at learning rate lr for the optimizer's step-th step (1-based). */
drl_optim_hparams drl_optim_hparams_at(const drl_config_optim *o, float lr, int64_t step);

/* The learning rate at 1-based step of total steps: linear warmup, then cosine decay to min_lr_ratio * lr, or
 * constant. */
float drl_optim_lr_at(const drl_config_optim *o, int step, int total);

/* One AdamW step of ps from its reduced gradient (dp NULL: one process, else through dp's ranks and ZeRO part),
 * weight decay on the tensors that take it, the global norm clipped to hp->grad_clip. A bad step changes nothing
 * (parameters, moments) and names what was not finite in bad: "loss" when loss (the job's, the same on every rank)
 * is not finite, else the first tensor of the reduced gradient holding a non-finite value (alike on every rank), or
 * "gradient norm"; a good step leaves bad "". *grad_norm (required) receives the norm before clipping (NaN for a
 * non-finite loss). Collective. */
drl_status drl_optim_step(drl_dp *dp, drl_params *ps, const drl_optim_hparams *hp, double loss, float *grad_norm,
                          char bad[DRL_TENSOR_NAME_CAP]);

#ifdef __cplusplus
}
#endif
#endif /* DRL_OPTIM_H */
