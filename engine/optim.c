#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/adamw.h"
#include "kernels/nvtx.h"

drl_optim_hparams drl_optim_hparams_at(const drl_config_optim *o, float lr, int64_t step) {
  drl_optim_hparams hp = {lr,           (float)o->beta1,     (float)o->beta2, (float)o->eps,
                          (float)o->weight_decay, (float)o->grad_clip, (int)step};
  return hp;
}

float drl_optim_lr_at(const drl_config_optim *o, int step, int total) {
  double lr = o->lr;
  if (o->warmup_steps > 0 && step <= o->warmup_steps) return (float)(lr * step / o->warmup_steps);
  if (o->lr_schedule == DRL_CFG_LR_CONSTANT || total <= o->warmup_steps) return (float)lr;
  double progress = (double)(step - o->warmup_steps) / (double)(total - o->warmup_steps);
  double lo = lr * o->min_lr_ratio;
  return (float)(lo + (lr - lo) * 0.5 * (1.0 + cos(3.14159265358979323846 * progress)));
}

/* The first tensor of the reduced gradient holding a non-finite value, alike on every rank: under ZeRO each rank
 * holds (and scans) only its part, and the lowest tensor index of the job wins. */
static drl_status name_bad_tensor(drl_dp *dp, const drl_params *ps, char *bad) {
  const drl_tensor_info *t = NULL;
  DRL_TRY(drl_layout_first_nonfinite(&ps->dev, &ps->layout, ps->grads, ps->optim_lo, ps->optim_hi, &t));
  int32_t first = t ? (int32_t)(t - ps->layout.tensors) : INT32_MAX;
  if (dp && dp->zero && dp->comm && dp->comm->size > 1) {
    int32_t *all = NULL;
    size_t bytes = 0;
    DRL_TRY(drl_dp_gather(dp, &first, sizeof first, (void **)&all, &bytes, NULL));
    for (size_t r = 0; r < bytes / sizeof first; ++r) first = all[r] < first ? all[r] : first;
    free(all);
  }
  /* Every element finite but the norm beyond float range: the norm is what is not finite. */
  snprintf(bad, DRL_TENSOR_NAME_CAP, "%s", first < ps->layout.count ? ps->layout.tensors[first].name : "gradient norm");
  return DRL_OK;
}

drl_status drl_optim_step(drl_dp *dp, drl_params *ps, const drl_optim_hparams *hp, double loss, float *grad_norm,
                          char bad[DRL_TENSOR_NAME_CAP]) {
  DRL_RANGE("optimizer");
  bad[0] = '\0';
  if (!isfinite(loss)) {
    *grad_norm = NAN;
    snprintf(bad, DRL_TENSOR_NAME_CAP, "loss");
    return DRL_OK;
  }
  if (!(dp && dp->zero) && (ps->optim_lo != 0 || ps->optim_hi != ps->layout.total))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "the optimizer state is sharded; step through the data-parallel state");
  double sumsq = 0.0;
  DRL_TRY(drl_dp_grad_sumsq(dp, &ps->dev, ps->grads, ps->layout.total, ps->norm_scratch, &sumsq));
  float norm = (float)sqrt(sumsq);
  *grad_norm = norm;
  if (!isfinite(norm)) return name_bad_tensor(dp, ps, bad);
  drl_adamw_hparams a = {hp->lr,           hp->beta1, hp->beta2, hp->eps, hp->weight_decay, hp->step,
                         drl_clip_scale(norm, hp->grad_clip)};
  DRL_TRY(drl_adamw_layout(&ps->dev, &ps->layout, ps->params, ps->grads, ps->m, ps->v, ps->optim_lo, ps->optim_hi,
                           a));
  return drl_dp_share_params(dp, ps->params);
}
