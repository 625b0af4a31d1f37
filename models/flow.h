/* The flow velocity network v_theta(x, t, c) (DESIGN §5): an MLP on the data point x [D], sinusoidal features of the
 * time t (1 = noise) and a learned embedding of the condition c:
 *   h_0 = silu(W_x x + W_t temb(t) + W_c emb[c] + b_0);  h_i = silu(W_i h_{i-1} + b_i);  v = W_out h_{L-1} + b_out.
 * Trained by flow matching (x_t = (1 - t) x_0 + t eps, target eps - x_0) and then by GRPO through the SDE sampler.
 * Parameters, gradients and AdamW moments are one flat buffer each with an offset table, like the transformer's;
 * activations are allocated once for rows_max points. All pointers of the forward and backward are on the model's
 * device. */
#ifndef DRL_FLOW_H
#define DRL_FLOW_H

#include <stdint.h>

#include "kernels/device.h"
#include "kernels/layout.h"
#include "models/params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_flow_config {
  int dim;           /* D, the data's dimensions */
  int n_cond;        /* conditions */
  int cond_dim;      /* condition embedding width */
  int time_features; /* sin/cos features of t (even) */
  int hidden;        /* H */
  int layers;        /* hidden layers, >= 1 */
  float init_std, max_freq;
} drl_flow_config;

typedef struct drl_flow {
  drl_flow_config cfg;
  drl_device dev;
  drl_params ps;       /* layout cond_emb, l0.w_x, l0.w_t, l0.w_c, l0.b, l1.w, l1.b, ..., out.w, out.b */
  int rows_max, rows; /* allocated points; those of the last forward */
  /* activations of the last forward and backward scratch (one allocation) */
  float *x, *temb, *cemb, *freq;
  int32_t *cond;
  float *pre, *act;    /* [layers][rows_max, H] */
  float *dact, *dpre, *dcemb;
  void *emb_scratch;
  void *block;
} drl_flow;

/* Checks a configuration (positive sizes, even time_features). */
drl_status drl_flow_config_check(const drl_flow_config *cfg);

/* The offset table of cfg. */
drl_status drl_flow_layout(const drl_flow_config *cfg, drl_layout *layout);

/* Creates the network on dev for up to rows_max points, initialised from seed (N(0, init_std) matrices from the
 * addressed DRL_RNG_INIT stream, zero biases). */
drl_status drl_flow_create(drl_flow *m, const drl_flow_config *cfg, const drl_device *dev, int rows_max, uint64_t seed);

/* Frees everything; safe on a zeroed model. */
void drl_flow_free(drl_flow *m);

/* v [rows, D] = v_theta(x [rows, D], t [rows], cond [rows]) (device arrays; x and cond are copied for the backward). */
drl_status drl_flow_forward(drl_flow *m, const float *x, const float *t, const int32_t *cond, int rows, float *v);

/* Backward of L = sum dv . v through the last forward: adds into the gradients. */
drl_status drl_flow_backward(drl_flow *m, const float *dv);

#ifdef __cplusplus
}
#endif
#endif /* DRL_FLOW_H */
