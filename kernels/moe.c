/* CPU MoE ops: rows in parallel over the shared per-row math of moe.h (each row's result is independent of the split,
 * so of the thread count); dispatch is a sequential counting sort (stable by construction). */
#include "moe.h"

#include <stdint.h>
#include <string.h>

#include "nvtx.h"

/* ---- argument checks ---- */

static drl_status check_router(const char *op, int64_t R, int E, int K) {
  if (R < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: negative token count R=%lld", op, (long long)R);
  if (E < 1 || E > DRL_MOE_MAX_EXPERTS)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: E=%d experts outside 1..%d", op, E, DRL_MOE_MAX_EXPERTS);
  if (K < 1 || K > E) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: top K=%d outside 1..E (E=%d)", op, K, E);
  if (R > INT64_MAX / DRL_MOE_MAX_EXPERTS)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: R=%lld tokens overflow the index range", op, (long long)R);
  return DRL_OK;
}

/* The packed-row ops index assignments and packed rows with int32 (order, slot). */
static drl_status check_assignments(const char *op, int64_t R, int K, int C) {
  if (R < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: negative token count R=%lld", op, (long long)R);
  if (K < 1) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: K=%d assignments per token (need >= 1)", op, K);
  if (C < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: negative channel count C=%d", op, C);
  if (R > INT32_MAX / K)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: R*K = %lld*%d assignments do not fit int32 indices", op, (long long)R,
                    K);
  return DRL_OK;
}

/* The first out-of-range entry of idx[0..n), so the message can name it; nothing has been written yet. */
static drl_status check_indices(const char *op, const char *what, const int32_t *idx, int64_t n, int64_t limit) {
  for (int64_t i = 0; i < n; ++i)
    if (!drl_moe_index_ok(idx[i], limit))
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: %s[%lld] = %d outside [0, %lld)", op, what, (long long)i, (int)idx[i],
                      (long long)limit);
  return DRL_OK;
}

/* ---- CPU implementations ---- */

drl_status drl_moe_route_cpu(float *scores, int32_t *sel, float *gates, const float *logits, const float *bias,
                             int64_t R, int E, int K, int normalize, float route_scale) {
#pragma omp parallel for schedule(static) if (R * E > DRL_OMP_MIN_MATH)
  for (int64_t r = 0; r < R; ++r)
    drl_moe_route_row(scores + r * E, sel + r * K, gates + r * K, logits + r * E, bias, E, K, normalize, route_scale);
  return DRL_OK;
}

drl_status drl_moe_route_backward_cpu(float *dlogits, const float *dgates, const float *scores, const int32_t *sel,
                                      int64_t R, int E, int K, int normalize, float route_scale, const float *aux,
                                      const uint8_t *row_mask) {
  DRL_TRY(check_indices("drl_moe_route_backward", "sel", sel, R * K, E));
#pragma omp parallel for schedule(static) if (R * E > DRL_OMP_MIN_MATH)
  for (int64_t r = 0; r < R; ++r) {
    const float *row_aux = aux && (!row_mask || row_mask[r]) ? aux : NULL;
    drl_moe_route_backward_row(dlogits + r * E, dgates + r * K, scores + r * E, sel + r * K, E, K, normalize,
                               route_scale, row_aux);
  }
  return DRL_OK;
}

drl_status drl_moe_dispatch_cpu(int32_t *order, int32_t *slot, int64_t *offsets, const int32_t *sel, int64_t R, int K,
                                int E) {
  const int64_t n = R * K;
  DRL_TRY(check_indices("drl_moe_dispatch", "sel", sel, n, E));
  /* Counting sort: counts into offsets[e + 1], exclusive scan, then offsets[e] serves as expert e's cursor while the
   * assignments are placed in increasing a (stable); afterwards offsets[e] holds the start of e + 1: shift back. */
  memset(offsets, 0, (size_t)(E + 1) * sizeof *offsets);
  for (int64_t a = 0; a < n; ++a) ++offsets[sel[a] + 1];
  for (int e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  for (int64_t a = 0; a < n; ++a) {
    int64_t p = offsets[sel[a]]++;
    order[p] = (int32_t)a;
    slot[a] = (int32_t)p;
  }
  for (int e = E - 1; e > 0; --e) offsets[e] = offsets[e - 1];
  offsets[0] = 0;
  return DRL_OK;
}

drl_status drl_moe_gather_cpu(float *out, const float *in, const int32_t *order, int64_t R, int K, int C) {
  const int64_t n = R * K;
  DRL_TRY(check_indices("drl_moe_gather", "order", order, n, n));
#pragma omp parallel for schedule(static) if (n * C > DRL_OMP_MIN_CHEAP)
  for (int64_t p = 0; p < n; ++p)
    memcpy(out + p * C, in + (int64_t)(order[p] / K) * C, (size_t)C * sizeof(float));
  return DRL_OK;
}

drl_status drl_moe_combine_cpu(float *out, const float *y, const int32_t *slot, const float *w, int64_t R, int K,
                               int C) {
  DRL_TRY(check_indices("drl_moe_combine", "slot", slot, R * K, R * K));
#pragma omp parallel for schedule(static) if (R * C > DRL_OMP_MIN_MATH)
  for (int64_t r = 0; r < R; ++r) {
    const int32_t *s = slot + r * K;
    const float *wr = w ? w + r * K : NULL;
    float *o = out + r * C;
    for (int c = 0; c < C; ++c) o[c] = drl_moe_combine_elem(o[c], y, s, wr, K, C, c);
  }
  return DRL_OK;
}

drl_status drl_moe_combine_backward_cpu(float *dy, float *dw, const float *dout, const float *y, const int32_t *slot,
                                        const float *w, int64_t R, int K, int C) {
  DRL_TRY(check_indices("drl_moe_combine_backward", "slot", slot, R * K, R * K));
  if (C == 0) { /* no rows (dy, dout and y may be NULL): every dot product is empty */
    for (int64_t a = 0; a < R * K; ++a) dw[a] = 0.0f;
    return DRL_OK;
  }
#pragma omp parallel for schedule(static) if (R * K * C > DRL_OMP_MIN_MATH)
  for (int64_t r = 0; r < R; ++r) {
    const float *g = dout + r * C;
    for (int k = 0; k < K; ++k) {
      int64_t a = r * K + k, p = slot[a];
      float *d = dy + p * C;
      for (int c = 0; c < C; ++c) d[c] = drl_fmul(w[a], g[c]);
      dw[a] = drl_moe_dw_elem(g, y + p * C, C);
    }
  }
  return DRL_OK;
}

/* ---- dispatching entry points ---- */

drl_status drl_moe_route(const drl_device *dev, float *scores, int32_t *sel, float *gates, const float *logits,
                         const float *bias, int64_t R, int E, int K, int normalize, float route_scale) {
  DRL_RANGE("moe_route");
  DRL_TRY(check_router("drl_moe_route", R, E, K));
  if (R == 0) return DRL_OK;
  if (!scores || !sel || !gates || !logits)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_moe_route: NULL buffer (scores %p, sel %p, gates %p, logits %p)",
                    (void *)scores, (void *)sel, (void *)gates, (const void *)logits);
  DRL_DISPATCH_CUDA(dev, drl_moe_route_cuda(dev, scores, sel, gates, logits, bias, R, E, K, normalize, route_scale));
  return drl_moe_route_cpu(scores, sel, gates, logits, bias, R, E, K, normalize, route_scale);
}

drl_status drl_moe_route_backward(const drl_device *dev, float *dlogits, const float *dgates, const float *scores,
                                  const int32_t *sel, int64_t R, int E, int K, int normalize, float route_scale,
                                  const float *aux, const uint8_t *row_mask) {
  DRL_RANGE("moe_route_backward");
  DRL_TRY(check_router("drl_moe_route_backward", R, E, K));
  if (R == 0) return DRL_OK;
  if (!dlogits || !dgates || !scores || !sel)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "drl_moe_route_backward: NULL buffer (dlogits %p, dgates %p, scores %p, sel %p)", (void *)dlogits,
                    (const void *)dgates, (const void *)scores, (const void *)sel);
  DRL_DISPATCH_CUDA(dev, drl_moe_route_backward_cuda(dev, dlogits, dgates, scores, sel, R, E, K, normalize,
                                                     route_scale, aux, row_mask));
  return drl_moe_route_backward_cpu(dlogits, dgates, scores, sel, R, E, K, normalize, route_scale, aux, row_mask);
}

static drl_status check_dispatch(const char *op, int64_t R, int K, int E) {
  if (E < 1 || E > DRL_MOE_MAX_EXPERTS)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: E=%d experts outside 1..%d", op, E, DRL_MOE_MAX_EXPERTS);
  return check_assignments(op, R, K, 0);
}

int64_t drl_moe_dispatch_scratch_bytes(const drl_device *dev, int64_t R, int K, int E) {
  if (R < 0 || K < 1 || E < 1 || E > DRL_MOE_MAX_EXPERTS || R > INT32_MAX / K) return -1;
  if (R == 0 || dev->backend != DRL_BACKEND_CUDA) return 0;
#ifdef DRL_HAVE_CUDA
  return drl_moe_dispatch_scratch_bytes_cuda(R, K, E);
#else
  return 0; /* the op itself reports the missing backend */
#endif
}

drl_status drl_moe_dispatch(const drl_device *dev, int32_t *order, int32_t *slot, int64_t *offsets, const int32_t *sel,
                            int64_t R, int K, int E, void *scratch) {
  DRL_RANGE("moe_dispatch");
  DRL_TRY(check_dispatch("drl_moe_dispatch", R, K, E));
  if (!offsets) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_moe_dispatch: NULL offsets (a host array of E+1 = %d)", E + 1);
  if (R > 0 && (!order || !slot || !sel))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_moe_dispatch: NULL buffer (order %p, slot %p, sel %p)", (void *)order,
                    (void *)slot, (const void *)sel);
  if (R > 0 && dev->backend == DRL_BACKEND_CUDA && !scratch)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "drl_moe_dispatch: NULL scratch (needs drl_moe_dispatch_scratch_bytes(dev, %lld, %d, %d) bytes)",
                    (long long)R, K, E);
  DRL_DISPATCH_CUDA(dev, drl_moe_dispatch_cuda(dev, order, slot, offsets, sel, R, K, E, scratch));
  return drl_moe_dispatch_cpu(order, slot, offsets, sel, R, K, E);
}

drl_status drl_moe_gather(const drl_device *dev, float *out, const float *in, const int32_t *order, int64_t R, int K,
                          int C) {
  DRL_RANGE("moe_gather");
  DRL_TRY(check_assignments("drl_moe_gather", R, K, C));
  if (R == 0 || C == 0) return DRL_OK;
  if (!out || !in || !order)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_moe_gather: NULL buffer (out %p, in %p, order %p)", (void *)out,
                    (const void *)in, (const void *)order);
  DRL_DISPATCH_CUDA(dev, drl_moe_gather_cuda(dev, out, in, order, R, K, C));
  return drl_moe_gather_cpu(out, in, order, R, K, C);
}

drl_status drl_moe_combine(const drl_device *dev, float *out, const float *y, const int32_t *slot, const float *w,
                           int64_t R, int K, int C) {
  DRL_RANGE("moe_combine");
  DRL_TRY(check_assignments("drl_moe_combine", R, K, C));
  if (R == 0 || C == 0) return DRL_OK;
  if (!out || !y || !slot)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_moe_combine: NULL buffer (out %p, y %p, slot %p)", (void *)out,
                    (const void *)y, (const void *)slot);
  DRL_DISPATCH_CUDA(dev, drl_moe_combine_cuda(dev, out, y, slot, w, R, K, C));
  return drl_moe_combine_cpu(out, y, slot, w, R, K, C);
}

drl_status drl_moe_combine_backward(const drl_device *dev, float *dy, float *dw, const float *dout, const float *y,
                                    const int32_t *slot, const float *w, int64_t R, int K, int C) {
  DRL_RANGE("moe_combine_backward");
  DRL_TRY(check_assignments("drl_moe_combine_backward", R, K, C));
  if (R == 0) return DRL_OK;
  /* With C == 0 there are no rows to touch, but dw (= 0) is still written. */
  if (!dw || !slot || !w || (C > 0 && (!dy || !dout || !y)))
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "drl_moe_combine_backward: NULL buffer (dy %p, dw %p, dout %p, y %p, slot %p, w %p)", (void *)dy,
                    (void *)dw, (const void *)dout, (const void *)y, (const void *)slot, (const void *)w);
  DRL_DISPATCH_CUDA(dev, drl_moe_combine_backward_cuda(dev, dy, dw, dout, y, slot, w, R, K, C));
  return drl_moe_combine_backward_cpu(dy, dw, dout, y, slot, w, R, K, C);
}
