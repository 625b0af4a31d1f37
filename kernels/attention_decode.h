/* Decode attention: one new query per sequence against its KV cache (incremental decoding).
 * q [N, H, D] after RoPE; caches [n_slots, T_cap, KV, D] (kernels/kv_append.h). Query row i belongs to cache slot
 * slot[i] and sits at absolute position pos[i], its own key and value already appended there; it attends to keys
 * [row_start[slot[i]], pos[i]] (drl_attention_key_range: causal, after the left padding; empty, so a zero output, for
 * pos < row_start). Query head h reads kv head h / (H / KV); scale 1/sqrt(D). out [N, H, D].
 * Every score, probability and output sum is formed exactly as the training forward's CPU attention forms it
 * (attention.h), so on the CPU a decoded row reproduces the full-sequence attention output bit for bit. */
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

/* Index arrays are int32 on dev: 0 <= slot[i] < n_slots, 0 <= pos[i] < T_cap, 0 <= row_start[s] <= T_cap (the CPU
 * reports a bad value; the GPU skips a bad row and clamps row_start). scratch: drl_attention_decode_scratch_floats. */
drl_status drl_attention_decode(const drl_device *dev, float *out, const float *q, const float *k_cache,
                                const float *v_cache, const int32_t *slot, const int32_t *row_start,
                                const int32_t *pos, int N, int n_slots, int T_cap, int H, int KV, int D,
                                float *scratch);

/* Scratch floats drl_attention_decode needs (both backends): one row of scores per (query row, head). */
int64_t drl_attention_decode_scratch_floats(int N, int H, int T_cap);

drl_status drl_attention_decode_cpu(float *out, const float *q, const float *k_cache, const float *v_cache,
                                    const int32_t *slot, const int32_t *row_start, const int32_t *pos, int N,
                                    int n_slots, int T_cap, int H, int KV, int D, float *scratch);
drl_status drl_attention_decode_cuda(const drl_device *dev, float *out, const float *q, const float *k_cache,
                                     const float *v_cache, const int32_t *slot, const int32_t *row_start,
                                     const int32_t *pos, int N, int n_slots, int T_cap, int H, int KV, int D,
                                     float *scratch);

#ifdef __cplusplus
}
#endif

/* ---- the row math, shared by the CPU loop and the CUDA kernel ---- */

/* First float of kv head kvh at position 0 of a slot; position j of that head is j * KV * D floats further. */
static inline DRL_HD int64_t drl_kv_slot_head(int slot, int kvh, int T_cap, int KV, int D) {
  return drl_kv_offset(slot, 0, T_cap, KV * D) + (int64_t)kvh * D;
}



/* One step of an output sum: acc + p * v, rounded twice (no FMA), keys in increasing order. */
static inline DRL_HD float drl_attention_out_acc(float acc, float p, float v) { return drl_fadd(acc, drl_fmul(p, v)); }

/* One query row: out[D] from keys [lo, hi) of one kv head (key j at k + j * stride, value j at v + j * stride);
 * row[0, hi) is scratch for the scores. The CPU runs it as is; the GPU kernel runs the same steps with lanes over keys
 * (scores, max, sum) and over d (the outputs, keys in order), so only the order of the softmax sum differs. */
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
