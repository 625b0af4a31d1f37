/* One parameter set: the named-tensor layout and, on one device, the flat fp32 buffers of parameters, gradients and
 * AdamW moments (DESIGN §3). Every policy owns one, so checkpointing, data-parallel reduction, ZeRO sharding, SPSA
 * perturbation and the optimizer step are each one call over a flat buffer, whatever the model. */
#ifndef DRL_PARAMS_H
#define DRL_PARAMS_H

#include <stdint.h>

#include "kernels/device.h"
#include "kernels/layout.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_params {
  drl_device dev;
  drl_layout layout;
  float *params, *grads;      /* on dev, layout.total each */
  float *m, *v;               /* AdamW moments of elements [optim_lo, optim_hi) (zero until the first step) */
  int64_t optim_lo, optim_hi; /* [0, layout.total) unless sharded (ZeRO-1) */
  void *norm_scratch;         /* drl_sum_squares scratch for the whole gradient */
} drl_params;

/* Takes ownership of *layout (zeroed) and allocates zeroed buffers for it on dev; the allocations are named
 * "<prefix>parameters", "<prefix>gradients", ... in out-of-memory messages. On failure nothing stays allocated. */
drl_status drl_params_create(drl_params *ps, const drl_device *dev, drl_layout *layout, const char *prefix);

/* Frees everything; safe on a zeroed set. */
void drl_params_free(drl_params *ps);

/* Zeroes the gradient buffer. */
drl_status drl_params_zero_grads(drl_params *ps);

/* Keeps the AdamW moments of elements [lo, hi) only (ZeRO-1: each rank steps its part), freshly zeroed. */
drl_status drl_params_shard_optimizer(drl_params *ps, int64_t lo, int64_t hi);

#ifdef __cplusplus
}
#endif
#endif /* DRL_PARAMS_H */
