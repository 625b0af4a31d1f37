/* CPU decode attention: one (query row, head) task per OpenMP iteration, each running drl_attention_decode_row on
 * its own scratch row, so the thread count changes no bit. */
#include "attention_decode.h"

#include "nvtx.h"

int64_t drl_attention_decode_scratch_floats(int N, int H, int T_cap) {
  if (N < 0 || H <= 0 || T_cap < 0) return 0;
  return (int64_t)N * H * T_cap;
}

drl_status drl_attention_decode_cpu(float *out, const float *q, const float *k_cache, const float *v_cache,
                                    const int32_t *slot, const int32_t *row_start, const int32_t *pos, int N,
                                    int n_slots, int T_cap, int H, int KV, int D, float *scratch) {
  for (int i = 0; i < N; ++i) {
    if (slot[i] < 0 || slot[i] >= n_slots || pos[i] < 0 || pos[i] >= T_cap)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "attention_decode: row %d (slot %d, position %d) outside %d slots x %d", i,
                      (int)slot[i], (int)pos[i], n_slots, T_cap);
    int rs = row_start[slot[i]];
    if (rs < 0 || rs > T_cap)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "attention_decode: row_start[%d] = %d outside [0, %d]", (int)slot[i], rs,
                      T_cap);
  }
  const int g = H / KV;
  const float scale = drl_attention_scale(D);
  const int64_t stride = (int64_t)KV * D; /* floats between consecutive positions of one kv head */
#pragma omp parallel for schedule(static)
  for (int ih = 0; ih < N * H; ++ih) {
    int i = ih / H, h = ih % H;
    int lo, hi;
    drl_attention_key_range(pos[i], row_start[slot[i]], &lo, &hi);
    int64_t base = drl_kv_slot_head(slot[i], h / g, T_cap, KV, D);
    drl_attention_decode_row(out + (int64_t)ih * D, scratch + (int64_t)ih * T_cap, q + (int64_t)ih * D,
                             k_cache + base, v_cache + base, stride, lo, hi, D, scale);
  }
  return DRL_OK;
}

drl_status drl_attention_decode(const drl_device *dev, float *out, const float *q, const float *k_cache,
                                const float *v_cache, const int32_t *slot, const int32_t *row_start,
                                const int32_t *pos, int N, int n_slots, int T_cap, int H, int KV, int D,
                                float *scratch) {
  DRL_RANGE("attention_decode");
  if (N < 0 || n_slots < 0 || T_cap < 0 || H <= 0 || KV <= 0 || D <= 0 || H % KV)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "attention_decode: bad sizes N=%d n_slots=%d T_cap=%d H=%d KV=%d D=%d (KV must divide H)", N,
                    n_slots, T_cap, H, KV, D);
  if (N == 0) return DRL_OK;
  if (!out || !q || !k_cache || !v_cache || !slot || !row_start || !pos || !scratch)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "attention_decode: NULL buffer (scratch needs drl_attention_decode_scratch_floats floats)");
  DRL_DISPATCH_CUDA(dev, drl_attention_decode_cuda(dev, out, q, k_cache, v_cache, slot, row_start, pos, N, n_slots,
                                                   T_cap, H, KV, D, scratch));
  return drl_attention_decode_cpu(out, q, k_cache, v_cache, slot, row_start, pos, N, n_slots, T_cap, H, KV, D,
                                  scratch);
}
