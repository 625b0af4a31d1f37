/* Decode attention: one new query per sequence against a KV cache whose prompt part is stored once per group of
 * sequences (models/kv_cache.h). The cache view (drl_decode_kv): a prefix store [n_groups, P_cap, KV, D] holding each
 * group's prompt, and a suffix store [n_slots, S_cap, KV, D] holding each sequence's own tokens; keys after RoPE.
 * Key column j < P (the batch's prefix length) of query row i is prefix position j of group grp[i]; column j >= P is
 * suffix position j - P of slot slot[i]. Row i sits at column pos[i], its own key and value already stored, and
 * attends to columns [row_start[grp[i]], pos[i]] (drl_attention_key_range: causal, after the left padding; empty, so a
 * zero output, for pos < row_start). q [N, H, D] after RoPE; query head h reads kv head h / (H / KV); scale
 * 1/sqrt(D). out [N, H, D].
 * Every score, probability and output sum is formed exactly as the training forward's CPU attention forms it
 * (attention.h), so on the CPU a decoded row reproduces the full-sequence attention output bit for bit. The CPU reads
 * each prefix key once for every run of adjacent rows of one group and all query heads of a kv head, and still gives
 * every output the operation sequence of the row-by-row path. */
#ifndef DRL_ATTENTION_DECODE_H
#define DRL_ATTENTION_DECODE_H

#include <stdint.h>

#include "attention.h"
#include "device.h"
#include "hd.h"
#include "kv_append.h"
#include "philox.h" /* drl_fadd, drl_fmul: explicitly rounded, so nvcc cannot fuse them into an FMA */

#ifdef __cplusplus
extern "C" {
#endif

/* One layer's cache as decode attention reads it; pointers on dev. */
typedef struct drl_decode_kv {
  const float *kp, *vp;     /* prefix store [n_groups, P_cap, KV * D] */
  const float *ks, *vs;     /* suffix store [n_slots, S_cap, KV * D] */
  const int32_t *row_start; /* [n_groups]: the group's first real column */
  int n_groups, P_cap, n_slots, S_cap;
  int P;                    /* the batch's prefix length, 0 <= P <= P_cap: columns below it are the group's */
} drl_decode_kv;

/* Index arrays are int32 on dev: 0 <= grp[i] < n_groups, 0 <= slot[i] < n_slots, 0 <= pos[i] < P + S_cap,
 * 0 <= row_start[g] <= P + S_cap (the CPU reports a bad value; the GPU skips a bad row and clamps row_start).
 * scratch: drl_attention_decode_scratch_floats(N, H, P + S_cap). */
drl_status drl_attention_decode(const drl_device *dev, float *out, const float *q, const drl_decode_kv *kv,
                                const int32_t *grp, const int32_t *slot, const int32_t *pos, int N, int H, int KV,
                                int D, float *scratch);

/* Scratch floats drl_attention_decode needs (both backends): one row of scores per (query row, head), T_cap columns. */
int64_t drl_attention_decode_scratch_floats(int N, int H, int T_cap);

drl_status drl_attention_decode_cpu(float *out, const float *q, const drl_decode_kv *kv, const int32_t *grp,
                                    const int32_t *slot, const int32_t *pos, int N, int H, int KV, int D,
                                    float *scratch);
drl_status drl_attention_decode_cuda(const drl_device *dev, float *out, const float *q, const drl_decode_kv *kv,
                                     const int32_t *grp, const int32_t *slot, const int32_t *pos, int N, int H, int KV,
                                     int D, float *scratch);

#ifdef __cplusplus
}
#endif

/* ---- the row math, shared by the CPU loop and the CUDA kernel ---- */

/* First float of kv head kvh at position 0 of a slot; position j of that head is j * KV * D floats further. */
static inline DRL_HD int64_t drl_kv_slot_head(int slot, int kvh, int T_cap, int KV, int D) {
  return drl_kv_offset(slot, 0, T_cap, KV * D) + (int64_t)kvh * D;
}

/* Key (or value, from the v stores) column j of kv head kvh for a row of group grp in slot slot. */
static inline DRL_HD const float *drl_decode_key(const float *prefix, const float *suffix, const drl_decode_kv *kv,
                                                 int grp, int slot, int kvh, int KV, int D, int j) {
  return j < kv->P ? prefix + drl_kv_slot_head(grp, kvh, kv->P_cap, KV, D) + (int64_t)j * KV * D
                   : suffix + drl_kv_slot_head(slot, kvh, kv->S_cap, KV, D) + (int64_t)(j - kv->P) * KV * D;
}

/* One step of an output sum: acc + p * v, rounded twice (no FMA), keys in increasing order. */
static inline DRL_HD float drl_attention_out_acc(float acc, float p, float v) { return drl_fadd(acc, drl_fmul(p, v)); }

/* One query row, the row-by-row path: out[D] from keys [lo, hi) of one kv head (key j at k + j * stride, value j at
 * v + j * stride); row[0, hi) is scratch for the scores. The CPU's grouped loop gives each output exactly these steps
 * (tests hold it to these bits); the GPU kernel runs them with lanes over keys (scores, max, sum) and over d (the
 * outputs, keys in order), so only the order of the softmax sum differs. */
static inline DRL_HD void drl_attention_decode_row(float *out, float *row, const float *q, const float *k,
                                                   const float *v, int64_t stride, int lo, int hi, int D,
                                                   float scale) {
  for (int j = lo; j < hi; ++j) row[j] = drl_attention_score(q, k + j * stride, D, scale);
  drl_softmax_masked_row(row, hi, lo, hi);
  for (int d = 0; d < D; ++d) out[d] = 0.0f;
  for (int j = lo; j < hi; ++j) {
    const float *vj = v + j * stride;
    for (int d = 0; d < D; ++d) out[d] = drl_attention_out_acc(out[d], row[j], vj[d]);
  }
}

#endif /* DRL_ATTENTION_DECODE_H */
