/* Mixture-of-experts routing, dispatch and combine (DESIGN.md section 5, research note A.2 / A.11).
 *
 * Routing is top-K on sigmoid scores: the selection uses s + b, the gates the unbiased s (optionally renormalised over
 * the K chosen, times route_scale). Every float op of the shared math below is rounded once (drl_fadd / drl_fmul /
 * drl_fma / drl_fdiv and the engine-owned drl_expf / drl_sigmoid_exact of exp.h), so the CPU and the GPU route,
 * gate and combine bit for bit alike: a token goes to the same experts on both backends.
 *
 * Layouts: logits, scores [R, E]; sel, gates, dgates [R, K]; assignment a = r*K + k; packed rows p in expert order
 * (order[p] = a, slot[a] = p); expert e owns packed rows offsets[e] .. offsets[e+1]-1. */
#ifndef DRL_MOE_H
#define DRL_MOE_H

#include <stdint.h>

#include "device.h"
#include "hd.h"
#include "exp.h"    /* drl_expf, drl_sigmoid_exact, drl_fdiv, drl_dadd, drl_dmul: the same bits on both backends */
#include "philox.h" /* drl_fadd, drl_fmul, drl_fma: explicitly rounded */

#ifdef __cplusplus
extern "C" {
#endif

/* The most experts one router handles (the selected-set bitmask of the gate normalisation is sized for it). */
#define DRL_MOE_MAX_EXPERTS 256

/* Router of R tokens over E experts, top K (1 <= K <= E <= 256): scores[r,e] = sigmoid(logits[r,e]);
 * sel[r,0..K-1] = the K experts with the largest scores[r,e] + bias[e] (bias NULL = zeros), in descending order of
 * that biased score, ties to the lower expert index (deterministic); gates[r,k] = route_scale * scores[r, sel[r,k]],
 * divided by (sum over the K selected scores + 1e-20f) when normalize. The gates use the UNBIASED scores: the bias only
 * moves the selection. All arrays on dev. */
drl_status drl_moe_route(const drl_device *dev, float *scores, int32_t *sel, float *gates, const float *logits,
                         const float *bias, int64_t R, int E, int K, int normalize, float route_scale);

/* Backward of the router: dlogits[r,e] = ds[r,e] * s (1 - s) with s = scores[r,e], where ds collects
 *  (1) the gates' gradient dgates [R,K] through the scale and the normalisation, at the selected experts only;
 *  (2) when aux != NULL (an auxiliary balancing loss on s_hat = s / sum_j s_j, dL/ds_hat[r,i] = aux[i], a [E] array on
 *      dev), for rows with row_mask[r] != 0 (row_mask NULL = all rows): ds[r,j] += (aux[j] - sum_i aux[i] s_hat[r,i]) /
 *      sum_i s[r,i].
 * Overwrites dlogits. An expert id in sel outside [0, E): an error on the CPU (nothing written), a NaN row on the GPU. */
drl_status drl_moe_route_backward(const drl_device *dev, float *dlogits, const float *dgates, const float *scores,
                                  const int32_t *sel, int64_t R, int E, int K, int normalize, float route_scale,
                                  const float *aux, const uint8_t *row_mask);

/* Dispatch of the R*K assignments a = r*K + k to experts: order[p] = the assignment of packed row p, assignments
 * sorted by expert sel[a] ascending and, within an expert, by a ascending (a stable sort, so the packing is
 * deterministic); slot[a] = p (the inverse); offsets[e] for e <= E = the first packed row of expert e (offsets[E] =
 * R*K), written to the HOST array offsets (the caller loops over experts on the host; the GPU call synchronises).
 * scratch: drl_moe_dispatch_scratch_bytes on dev. R*K must fit in int32. An expert id outside [0, E) is an error on
 * both backends. */
drl_status drl_moe_dispatch(const drl_device *dev, int32_t *order, int32_t *slot, int64_t *offsets, const int32_t *sel,
                            int64_t R, int K, int E, void *scratch);

/* Scratch bytes drl_moe_dispatch needs on dev (0 on the CPU; -1 for invalid sizes or if CUB cannot size its sort). */
int64_t drl_moe_dispatch_scratch_bytes(const drl_device *dev, int64_t R, int K, int E);

/* out[p, :] = in[order[p] / K, :] for p < R*K (token rows into expert order; in is [R, C]). An order entry outside
 * [0, R*K): an error on the CPU (nothing written), a NaN row on the GPU. */
drl_status drl_moe_gather(const drl_device *dev, float *out, const float *in, const int32_t *order, int64_t R, int K,
                          int C);

/* out[r, :] += sum over k = 0..K-1, in that order, of w[r,k] * y[slot[r*K+k], :] (w NULL: weight 1, i.e. a plain sum:
 * the backward of drl_moe_gather). y is [R*K, C] in expert order. The K terms are summed from 0 first, then added to
 * out. A slot outside [0, R*K): an error on the CPU (nothing written), NaN on the GPU. */
drl_status drl_moe_combine(const drl_device *dev, float *out, const float *y, const int32_t *slot, const float *w,
                           int64_t R, int K, int C);

/* Backward of drl_moe_combine with weights: dy[slot[r*K+k], :] = w[r,k] * dout[r, :] (overwrites dy: every row when
 * slot is a permutation, as drl_moe_dispatch makes it), and dw[r,k] = sum over c ascending of dout[r,c] *
 * y[slot[r*K+k], c], accumulated in double then rounded to float (the same order on both backends). A bad slot: an
 * error on the CPU (nothing written); on the GPU its dy row is skipped and its dw is NaN. */
drl_status drl_moe_combine_backward(const drl_device *dev, float *dy, float *dw, const float *dout, const float *y,
                                    const int32_t *slot, const float *w, int64_t R, int K, int C);

drl_status drl_moe_route_cpu(float *scores, int32_t *sel, float *gates, const float *logits, const float *bias,
                             int64_t R, int E, int K, int normalize, float route_scale);
drl_status drl_moe_route_backward_cpu(float *dlogits, const float *dgates, const float *scores, const int32_t *sel,
                                      int64_t R, int E, int K, int normalize, float route_scale, const float *aux,
                                      const uint8_t *row_mask);
drl_status drl_moe_dispatch_cpu(int32_t *order, int32_t *slot, int64_t *offsets, const int32_t *sel, int64_t R, int K,
                                int E);
drl_status drl_moe_gather_cpu(float *out, const float *in, const int32_t *order, int64_t R, int K, int C);
drl_status drl_moe_combine_cpu(float *out, const float *y, const int32_t *slot, const float *w, int64_t R, int K,
                               int C);
drl_status drl_moe_combine_backward_cpu(float *dy, float *dw, const float *dout, const float *y, const int32_t *slot,
                                        const float *w, int64_t R, int K, int C);

drl_status drl_moe_route_cuda(const drl_device *dev, float *scores, int32_t *sel, float *gates, const float *logits,
                              const float *bias, int64_t R, int E, int K, int normalize, float route_scale);
drl_status drl_moe_route_backward_cuda(const drl_device *dev, float *dlogits, const float *dgates,
                                       const float *scores, const int32_t *sel, int64_t R, int E, int K, int normalize,
                                       float route_scale, const float *aux, const uint8_t *row_mask);
drl_status drl_moe_dispatch_cuda(const drl_device *dev, int32_t *order, int32_t *slot, int64_t *offsets,
                                 const int32_t *sel, int64_t R, int K, int E, void *scratch);
int64_t drl_moe_dispatch_scratch_bytes_cuda(int64_t R, int K, int E);
drl_status drl_moe_gather_cuda(const drl_device *dev, float *out, const float *in, const int32_t *order, int64_t R,
                               int K, int C);
drl_status drl_moe_combine_cuda(const drl_device *dev, float *out, const float *y, const int32_t *slot, const float *w,
                                int64_t R, int K, int C);
drl_status drl_moe_combine_backward_cuda(const drl_device *dev, float *dy, float *dw, const float *dout,
                                         const float *y, const int32_t *slot, const float *w, int64_t R, int K, int C);

#ifdef __cplusplus
}
#endif

/* ---- the math shared by both implementations ---- */

/* The selection score of expert e: s + b (just s without a bias, so bias NULL and zeros agree bit for bit). */
static inline DRL_HD float drl_moe_select_score(const float *scores, const float *bias, int e) {
  return bias ? drl_fadd(scores[e], bias[e]) : scores[e];
}

/* The normaliser of the gates: (sum of the selected scores) + 1e-20f, summed in ascending EXPERT order, not in k order:
 * it is then a function of the selected set alone, so a bias that only reorders the set leaves every gate's bits
 * unchanged (the bias moves the selection and nothing else). */
static inline DRL_HD float drl_moe_gate_denom(const float *scores, const int32_t *sel, int E, int K) {
  uint32_t chosen[DRL_MOE_MAX_EXPERTS / 32] = {0};
  for (int k = 0; k < K; ++k) chosen[sel[k] >> 5] |= 1u << (sel[k] & 31);
  float sum = 0.0f;
  for (int e = 0; e < E; ++e)
    if ((chosen[e >> 5] >> (e & 31)) & 1u) sum = drl_fadd(sum, scores[e]);
  return drl_fadd(sum, 1e-20f);
}

/* One token: scores[0..E), then sel[0..K) by insertion into a descending list kept in sel itself (an expert enters
 * only if strictly above the current K-th, and goes below every entry it ties with: those have lower indices), then
 * gates[0..K). */
static inline DRL_HD void drl_moe_route_row(float *scores, int32_t *sel, float *gates, const float *logits,
                                            const float *bias, int E, int K, int normalize, float route_scale) {
  for (int e = 0; e < E; ++e) scores[e] = drl_sigmoid_exact(logits[e]);
  int n = 0;
  for (int e = 0; e < E; ++e) {
    float x = drl_moe_select_score(scores, bias, e);
    int j;
    if (n < K)
      j = n++;
    else if (x > drl_moe_select_score(scores, bias, sel[K - 1]))
      j = K - 1;
    else
      continue;
    while (j > 0 && drl_moe_select_score(scores, bias, sel[j - 1]) < x) {
      sel[j] = sel[j - 1];
      --j;
    }
    sel[j] = e;
  }
  float denom = normalize ? drl_moe_gate_denom(scores, sel, E, K) : 1.0f;
  for (int k = 0; k < K; ++k) {
    float g = scores[sel[k]];
    if (normalize) g = drl_fdiv(g, denom);
    gates[k] = drl_fmul(g, route_scale);
  }
}

/* Whether every expert id of one token's sel lies in [0, E). */
static inline DRL_HD int drl_moe_sel_row_ok(const int32_t *sel, int E, int K) {
  for (int k = 0; k < K; ++k)
    if (sel[k] < 0 || sel[k] >= E) return 0;
  return 1;
}

/* One token's router backward (sel checked by the caller). aux NULL: no balancing term for this token. ds is built in
 * dlogits, then turned into the logit gradient in place. The gate term is the exact derivative of
 * g_m = c s_m / D, D = sum_k s_k + eps: dL/ds_m = c (dg_m - q / D) / D with q = sum_k dg_k s_k (in k order). */
static inline DRL_HD void drl_moe_route_backward_row(float *dlogits, const float *dgates, const float *scores,
                                                     const int32_t *sel, int E, int K, int normalize,
                                                     float route_scale, const float *aux) {
  if (aux) {
    float tot = 0.0f, dot = 0.0f;
    for (int e = 0; e < E; ++e) {
      tot = drl_fadd(tot, scores[e]);
      dot = drl_fadd(dot, drl_fmul(aux[e], scores[e]));
    }
    float mean = drl_fdiv(dot, tot); /* sum_i aux[i] s_hat[i] */
    for (int e = 0; e < E; ++e) dlogits[e] = drl_fdiv(drl_fadd(aux[e], -mean), tot);
  } else {
    for (int e = 0; e < E; ++e) dlogits[e] = 0.0f;
  }
  if (normalize) {
    float denom = drl_moe_gate_denom(scores, sel, E, K);
    float q = 0.0f;
    for (int k = 0; k < K; ++k) q = drl_fadd(q, drl_fmul(dgates[k], scores[sel[k]]));
    float qd = drl_fdiv(q, denom);
    for (int k = 0; k < K; ++k) {
      float d = drl_fmul(route_scale, drl_fdiv(drl_fadd(dgates[k], -qd), denom));
      dlogits[sel[k]] = drl_fadd(dlogits[sel[k]], d);
    }
  } else {
    for (int k = 0; k < K; ++k) dlogits[sel[k]] = drl_fadd(dlogits[sel[k]], drl_fmul(route_scale, dgates[k]));
  }
  for (int e = 0; e < E; ++e) {
    float s = scores[e];
    dlogits[e] = drl_fmul(drl_fmul(dlogits[e], s), drl_fadd(1.0f, -s));
  }
}

/* Whether a slot or order entry lies in [0, limit). */
static inline DRL_HD int drl_moe_index_ok(int32_t i, int64_t limit) { return i >= 0 && (int64_t)i < limit; }

/* One output element of the combine: out + (((0 + w_0 y_0) + w_1 y_1) + ...), y_k = y[slot[k] * C + c] (w NULL:
 * weight 1, no multiply). slot and w point at the token's K entries. */
static inline DRL_HD float drl_moe_combine_elem(float out, const float *y, const int32_t *slot, const float *w, int K,
                                                int64_t C, int64_t c) {
  float acc = 0.0f;
  for (int k = 0; k < K; ++k) {
    float v = y[(int64_t)slot[k] * C + c];
    acc = drl_fadd(acc, w ? drl_fmul(w[k], v) : v);
  }
  return drl_fadd(out, acc);
}

/* dw of one assignment: sum over c ascending of dout[c] * y[c] in double (each product of two floats is exact in
 * double, so only the adds round), then rounded to float. */
static inline DRL_HD float drl_moe_dw_elem(const float *dout, const float *y, int C) {
  double acc = 0.0;
  for (int c = 0; c < C; ++c) acc = drl_dadd(acc, drl_dmul((double)dout[c], (double)y[c]));
  return (float)acc;
}

#endif /* DRL_MOE_H */
