#include "params.h"

#include <stdio.h>
#include <string.h>

#include "kernels/reduce.h"

static drl_status alloc_named(const drl_params *ps, float **p, int64_t n, const char *prefix, const char *what) {
  char name[96];
  snprintf(name, sizeof name, "%s%s", prefix, what);
  return drl_alloc(&ps->dev, (void **)p, (size_t)n * sizeof(float), name);
}

drl_status drl_params_create(drl_params *ps, const drl_device *dev, drl_layout *layout, const char *prefix) {
  memset(ps, 0, sizeof *ps);
  ps->dev = *dev;
  ps->layout = *layout;
  memset(layout, 0, sizeof *layout);
  int64_t n = ps->layout.total;
  drl_status st = DRL_OK;
  DRL_TRY_GOTO(alloc_named(ps, &ps->params, n, prefix, "parameters"));
  DRL_TRY_GOTO(alloc_named(ps, &ps->grads, n, prefix, "gradients"));
  DRL_TRY_GOTO(alloc_named(ps, &ps->m, n, prefix, "AdamW first moments"));
  DRL_TRY_GOTO(alloc_named(ps, &ps->v, n, prefix, "AdamW second moments"));
  ps->optim_hi = n;
  DRL_TRY_GOTO(drl_alloc(dev, &ps->norm_scratch, (size_t)drl_reduce_scratch_bytes(dev, n), "gradient norm scratch"));
done:
  if (st != DRL_OK) drl_params_free(ps);
  return st;
}

void drl_params_free(drl_params *ps) {
  void *bufs[] = {ps->params, ps->grads, ps->m, ps->v, ps->norm_scratch};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; ++i) drl_free(&ps->dev, bufs[i]);
  drl_layout_free(&ps->layout);
  memset(ps, 0, sizeof *ps);
}

drl_status drl_params_zero_grads(drl_params *ps) {
  return drl_memset(&ps->dev, ps->grads, 0, (size_t)ps->layout.total * sizeof(float));
}

drl_status drl_params_shard_optimizer(drl_params *ps, int64_t lo, int64_t hi) {
  if (lo < 0 || lo > hi || hi > ps->layout.total)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "optimizer range [%lld, %lld) outside %lld parameters", (long long)lo,
                    (long long)hi, (long long)ps->layout.total);
  drl_free(&ps->dev, ps->m);
  drl_free(&ps->dev, ps->v);
  ps->m = ps->v = NULL;
  ps->optim_lo = ps->optim_hi = 0;
  DRL_TRY(alloc_named(ps, &ps->m, hi - lo, "", "AdamW first moments (shard)"));
  DRL_TRY(alloc_named(ps, &ps->v, hi - lo, "", "AdamW second moments (shard)"));
  ps->optim_lo = lo;
  ps->optim_hi = hi;
  return DRL_OK;
}
