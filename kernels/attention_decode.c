/* CPU decode attention. One task per (run of adjacent rows of one group, kv head): the prefix keys and values are read
 * once for the run's rows x query heads (M queries), the loops over keys outermost. Each output still sees exactly
 * drl_attention_decode_row's operation sequence (scores key by key, the same masked softmax row, output sums over the
 * keys in increasing order), so the result is that of the row-by-row path, bit for bit, and the thread count changes
 * no bit (tasks write disjoint outputs and scratch rows). */
#include "attention_decode.h"

#include "nvtx.h"

int64_t drl_attention_decode_scratch_floats(int N, int H, int T_cap) {
  if (N < 0 || H <= 0 || T_cap < 0) return 0;
  return (int64_t)N * H * T_cap;
}

/* Rows [i0, i1) of group grp, kv head kvh: queries (i, h) for h in [kvh * g, kvh * g + g). Built twice, for AVX2 and
 * for the baseline ISA, and picked at load time: the score's 8 partial sums fill one AVX2 register and the output
 * sums run across d, so vectorising reorders no operation of any one value (and -ffp-contract=off forbids FMA): both
 * clones give the same bits (the tests run whichever this machine picks against the scalar row path). */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
static void decode_run(float *out, const float *q, const drl_decode_kv *kv, int grp, const int32_t *slot,
                       const int32_t *pos, int i0, int i1, int kvh, int H, int KV, int D, int T_cap, float *scratch) {
  const int g = H / KV, P = kv->P;
  const float scale = drl_attention_scale(D);
  const int64_t stride = (int64_t)KV * D;
  int lo = 0, hi_max = 0;
  for (int i = i0; i < i1; ++i) {
    int hi;
    drl_attention_key_range(pos[i], kv->row_start[grp], &lo, &hi);
    if (hi > hi_max) hi_max = hi;
  }
  const int p_end = hi_max < P ? hi_max : P; /* prefix columns some row of the run sees */
#define ROW(i, h) (scratch + ((int64_t)(i) * H + (h)) * T_cap)
#define HI(i) (pos[i] >= lo ? pos[i] + 1 : lo)
  /* scores: the prefix key by key for every query, then each row's own keys */
  const float *kp = kv->kp + drl_kv_slot_head(grp, kvh, kv->P_cap, KV, D);
  for (int j = lo; j < p_end; ++j)
    for (int i = i0; i < i1; ++i)
      if (j < HI(i))
        for (int h = kvh * g; h < kvh * g + g; ++h)
          ROW(i, h)[j] = drl_attention_score(q + ((int64_t)i * H + h) * D, kp + j * stride, D, scale);
  for (int i = i0; i < i1; ++i) {
    const float *ks = kv->ks + drl_kv_slot_head(slot[i], kvh, kv->S_cap, KV, D);
    for (int h = kvh * g; h < kvh * g + g; ++h) {
      float *row = ROW(i, h);
      for (int j = lo > P ? lo : P; j < HI(i); ++j)
        row[j] = drl_attention_score(q + ((int64_t)i * H + h) * D, ks + (j - P) * stride, D, scale);
      drl_softmax_masked_row(row, HI(i), lo, HI(i));
      float *o = out + ((int64_t)i * H + h) * D;
      for (int d = 0; d < D; ++d) o[d] = 0.0f;
    }
  }
  /* outputs: the prefix values key by key for every query, then each row's own values */
  const float *vp = kv->vp + drl_kv_slot_head(grp, kvh, kv->P_cap, KV, D);
  for (int j = lo; j < p_end; ++j) {
    const float *vj = vp + j * stride;
    for (int i = i0; i < i1; ++i)
      if (j < HI(i))
        for (int h = kvh * g; h < kvh * g + g; ++h) {
          float *o = out + ((int64_t)i * H + h) * D, p = ROW(i, h)[j];
          for (int d = 0; d < D; ++d) o[d] = drl_attention_out_acc(o[d], p, vj[d]);
        }
  }
  for (int i = i0; i < i1; ++i) {
    const float *vs = kv->vs + drl_kv_slot_head(slot[i], kvh, kv->S_cap, KV, D);
    for (int h = kvh * g; h < kvh * g + g; ++h) {
      float *o = out + ((int64_t)i * H + h) * D;
      const float *row = ROW(i, h);
      for (int j = lo > P ? lo : P; j < HI(i); ++j) {
        const float *vj = vs + (j - P) * stride;
        for (int d = 0; d < D; ++d) o[d] = drl_attention_out_acc(o[d], row[j], vj[d]);
      }
    }
  }
#undef ROW
#undef HI
}

drl_status drl_attention_decode_cpu(float *out, const float *q, const drl_decode_kv *kv, const int32_t *grp,
                                    const int32_t *slot, const int32_t *pos, int N, int H, int KV, int D,
                                    float *scratch) {
  const int T_cap = kv->P + kv->S_cap;
  for (int i = 0; i < N; ++i) {
    if (grp[i] < 0 || grp[i] >= kv->n_groups || slot[i] < 0 || slot[i] >= kv->n_slots || pos[i] < 0 ||
        pos[i] >= T_cap)
      return DRL_FAIL(DRL_ERR_INVALID_ARG,
                      "attention_decode: row %d (group %d, slot %d, column %d) outside %d groups, %d slots, %d columns",
                      i, (int)grp[i], (int)slot[i], (int)pos[i], kv->n_groups, kv->n_slots, T_cap);
    int rs = kv->row_start[grp[i]];
    if (rs < 0 || rs > T_cap)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "attention_decode: row_start[%d] = %d outside [0, %d]", (int)grp[i], rs,
                      T_cap);
  }
  /* Task (i, kvh) runs when row i starts a run of one group; the others are empty. Dynamic: runs differ in size. */
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t t = 0; t < (int64_t)N * KV; ++t) {
    int i0 = (int)(t / KV), kvh = (int)(t % KV);
    if (i0 > 0 && grp[i0 - 1] == grp[i0]) continue;
    int i1 = i0 + 1;
    while (i1 < N && grp[i1] == grp[i0]) ++i1;
    decode_run(out, q, kv, grp[i0], slot, pos, i0, i1, kvh, H, KV, D, T_cap, scratch);
  }
  return DRL_OK;
}

drl_status drl_attention_decode(const drl_device *dev, float *out, const float *q, const drl_decode_kv *kv,
                                const int32_t *grp, const int32_t *slot, const int32_t *pos, int N, int H, int KV,
                                int D, float *scratch) {
  DRL_RANGE("attention_decode");
  if (!kv) return DRL_FAIL(DRL_ERR_INVALID_ARG, "attention_decode: NULL cache view");
  if (N < 0 || kv->n_groups < 0 || kv->n_slots < 0 || kv->P < 0 || kv->P > kv->P_cap || kv->S_cap < 0 || H <= 0 ||
      KV <= 0 || D <= 0 || H % KV)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "attention_decode: bad sizes N=%d groups=%d x P=%d of %d, slots=%d x %d, H=%d KV=%d D=%d (KV must "
                    "divide H)",
                    N, kv->n_groups, kv->P, kv->P_cap, kv->n_slots, kv->S_cap, H, KV, D);
  if (N == 0) return DRL_OK;
  if (!out || !q || !kv->kp || !kv->vp || !kv->ks || !kv->vs || !kv->row_start || !grp || !slot || !pos || !scratch)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "attention_decode: NULL buffer (scratch needs drl_attention_decode_scratch_floats floats)");
  DRL_DISPATCH_CUDA(dev, drl_attention_decode_cuda(dev, out, q, kv, grp, slot, pos, N, H, KV, D, scratch));
  return drl_attention_decode_cpu(out, q, kv, grp, slot, pos, N, H, KV, D, scratch);
}
