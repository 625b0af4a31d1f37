/* Mixture-of-experts FFN (DESIGN §5): E SwiGLU experts, top-K routing on sigmoid scores, optional shared expert, and
 * the auxiliary-loss-free bias that balances the load (research note Part A).
 *
 * For R tokens x [R, C] (the normed FFN input):
 *   logits = x W_r^T [R, E];  s = sigmoid(logits);  selection = top-K of s + b (b: the balancing bias, not a
 *   parameter);  gates = route_scale * s_sel (/ sum of the K selected s when normalize): the UNBIASED scores;
 *   the R K assignments are packed by expert (a stable sort), each expert runs its SwiGLU on its rows, and
 *   out[t] += sum_k gates[t,k] * expert_{sel[t,k]}(x[t])  (+ shared(x[t])).
 * Everything is deterministic: the packing is a stable sort, the combine sums k in order, the expert GEMMs see the same
 * rows in the same order on every run.
 *
 * Weights per MoE block, [out, in] like nn.Linear: router [E, C]; experts' w_gate and w_up [E * F, C] (expert e's rows
 * e F .. e F + F - 1) and w_down [E * C, F]; the shared expert's w_gate, w_up [Fs, C] and w_down [C, Fs]. */
#ifndef DRL_MOE_LAYER_H
#define DRL_MOE_LAYER_H

#include <stdint.h>

#include "kernels/device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_moe_config {
  int experts;     /* E routed experts per MoE block; 0 = no MoE block (every FFN dense) */
  int top_k;       /* K, 1 <= K <= E */
  int d_expert;    /* F: an expert's SwiGLU width */
  int shared_d_ff; /* Fs: the shared expert's width; 0 = none */
  int first_layer; /* blocks [first_layer, n_layers) are MoE blocks */
  int normalize;   /* gates divided by the sum of the selected scores */
  float route_scale;
} drl_moe_config;

/* Device pointers to one MoE block's weights (or their gradients); shared_* NULL without a shared expert. */
typedef struct drl_moe_weights {
  float *router, *w_gate, *w_up, *w_down, *shared_gate, *shared_up, *shared_down;
} drl_moe_weights;

/* One block's pass over up to rows_max tokens: what the backward needs, on the device (one block of memory). */
typedef struct drl_moe_work {
  float *logits, *scores;  /* [R, E] */
  float *gates;            /* [R, K] */
  int32_t *sel;            /* [R, K] */
  int32_t *order, *slot;   /* [R K]: assignment of packed row p; packed row of assignment t K + k */
  float *x, *g, *u, *h, *y; /* packed [R K, C], [R K, F] x 3, [R K, C] */
  float *sg, *su, *sh;     /* shared expert [R, Fs] */
  void *dispatch;          /* drl_moe_dispatch scratch */
  int64_t offsets[257];    /* host: first packed row of each expert in the last pass */
  int64_t R;               /* tokens of the last pass */
} drl_moe_work;

/* Scratch of one backward over up to rows_max tokens (shared by all blocks). */
typedef struct drl_moe_grad_work {
  float *dy, *dx;          /* [R K, C] */
  float *dh, *dg, *du;     /* [R K, F] */
  float *dgates;           /* [R, K] */
  float *dlogits;          /* [R, E] */
  float *dsh, *dsg, *dsu;  /* shared expert [R, Fs] */
} drl_moe_grad_work;

/* Checks a MoE configuration against the model width C (1 <= K <= E <= 256, F >= 1, Fs >= 0). */
drl_status drl_moe_config_check(const drl_moe_config *cfg, int C);

/* Lays one drl_moe_work for rows_max tokens over the memory at base and returns its bytes (base NULL: the bytes
 * only, pointers NULL, as drl_carve does). */
size_t drl_moe_work_carve(const drl_device *dev, const drl_moe_config *cfg, int C, int64_t rows_max, void *base,
                          drl_moe_work *w);

/* The same for the backward scratch. */
size_t drl_moe_grad_work_carve(const drl_moe_config *cfg, int C, int64_t rows_max, void *base, drl_moe_grad_work *w);

/* out[R, C] += MoE(x) for x [R, C]; bias [E] (device; NULL = zeros) moves only the selection. Fills work. */
drl_status drl_moe_forward(const drl_device *dev, const drl_moe_config *cfg, int C, const drl_moe_weights *w,
                           const float *bias, const float *x, float *out, int64_t R, drl_moe_work *work);

/* Backward of the last drl_moe_forward into work (same x): dx[R, C] += d(out)/dx . dout and the weight gradients
 * added into g. aux (device [E], NULL = none) is an auxiliary loss's gradient dL/ds_hat on the scores normalised over
 * all experts (drl_moe_route_backward), for the rows with row_mask != 0 (device [R]; NULL = all). */
drl_status drl_moe_backward(const drl_device *dev, const drl_moe_config *cfg, int C, const drl_moe_weights *w,
                            const drl_moe_weights *g, const float *x, const float *dout, float *dx, int64_t R,
                            const drl_moe_work *work, drl_moe_grad_work *gw, const float *aux,
                            const uint8_t *row_mask);

/* ---- load balancing (host) ---- */

typedef enum drl_moe_bias_rule { DRL_MOE_BIAS_SIGN = 0, DRL_MOE_BIAS_PROPORTIONAL = 1 } drl_moe_bias_rule;

/* The auxiliary-loss-free bias step of one block from its counts c [E] of one global batch (Algorithm 1 of the
 * paper): with mean c_bar, sign: b += u sign(c_bar - c); proportional: b += u (c_bar - c) / c_bar; center: the step
 * made zero-mean first. No tokens: nothing changes. */
void drl_moe_bias_update(float *bias, const double *counts, int E, float u, drl_moe_bias_rule rule, int center);

/* MaxVio = (max_i c_i - c_bar) / c_bar of counts c [E] (0 with no tokens). */
double drl_moe_maxvio(const double *counts, int E);

#ifdef __cplusplus
}
#endif
#endif /* DRL_MOE_LAYER_H */
