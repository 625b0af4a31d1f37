/* Writing keys and values into a KV cache. One layer's cache is two tensors [n_slots, T_cap, kv_dim] (slot = one
 * sequence, then its positions, then kv heads x head size; keys after RoPE). Rows of a source block [src_rows,
 * kv_dim] are scattered to (slot, position) pairs: decoding appends one row per sequence, prefill copies a prompt
 * block into one or more slots. Pure copies: the CPU and the GPU give the same bits. */
#ifndef DRL_KV_APPEND_H
#define DRL_KV_APPEND_H

#include <stdint.h>

#include "device.h"
#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* For i < N: k_cache[slot[i], pos[i], :] = k_src[src_row[i], :], and the same for v (src_row NULL: row i).
 * Index arrays are int32 on dev, with 0 <= slot < n_slots, 0 <= pos < T_cap, 0 <= src_row < src_rows (the CPU reports
 * a bad entry before writing anything; the GPU skips it). Destinations must be distinct (for a repeated one, which
 * row lands is unspecified); the source must not overlap the cache. */
drl_status drl_kv_append(const drl_device *dev, float *k_cache, float *v_cache, const float *k_src, const float *v_src,
                         const int32_t *src_row, const int32_t *slot, const int32_t *pos, int N, int src_rows,
                         int n_slots, int T_cap, int kv_dim);

drl_status drl_kv_append_cpu(float *k_cache, float *v_cache, const float *k_src, const float *v_src,
                             const int32_t *src_row, const int32_t *slot, const int32_t *pos, int N, int src_rows,
                             int n_slots, int T_cap, int kv_dim);
drl_status drl_kv_append_cuda(const drl_device *dev, float *k_cache, float *v_cache, const float *k_src,
                              const float *v_src, const int32_t *src_row, const int32_t *slot, const int32_t *pos,
                              int N, int src_rows, int n_slots, int T_cap, int kv_dim);

#ifdef __cplusplus
}
#endif

/* ---- the index math of both implementations ---- */

/* First float of (slot, pos) in a cache tensor [n_slots, T_cap, kv_dim]. */
static inline DRL_HD int64_t drl_kv_offset(int slot, int pos, int T_cap, int kv_dim) {
  return ((int64_t)slot * T_cap + pos) * kv_dim;
}

/* Whether entry (src, slot, pos) lies inside the source and the cache. */
static inline DRL_HD int drl_kv_entry_ok(int src, int slot, int pos, int src_rows, int n_slots, int T_cap) {
  return src >= 0 && src < src_rows && slot >= 0 && slot < n_slots && pos >= 0 && pos < T_cap;
}

#endif /* DRL_KV_APPEND_H */
