#include "kv_append.h"

#include <string.h>

#include "nvtx.h"

static int source_row(const int32_t *src_row, int i) { return src_row ? src_row[i] : i; }

drl_status drl_kv_append_cpu(float *k_cache, float *v_cache, const float *k_src, const float *v_src,
                             const int32_t *src_row, const int32_t *slot, const int32_t *pos, int N, int src_rows,
                             int n_slots, int T_cap, int kv_dim) {
  /* Checked before anything is written, so a bad entry leaves the cache as it was. */
  for (int i = 0; i < N; ++i)
    if (!drl_kv_entry_ok(source_row(src_row, i), slot[i], pos[i], src_rows, n_slots, T_cap))
      return DRL_FAIL(DRL_ERR_INVALID_ARG,
                      "kv_append: entry %d (source row %d -> slot %d, position %d) outside %d source rows, %d slots "
                      "x %d positions",
                      i, source_row(src_row, i), (int)slot[i], (int)pos[i], src_rows, n_slots, T_cap);
  const size_t row_bytes = (size_t)kv_dim * sizeof(float);
#pragma omp parallel for schedule(static) if ((int64_t)N * kv_dim > DRL_OMP_MIN_CHEAP)
  for (int i = 0; i < N; ++i) {
    int64_t dst = drl_kv_offset(slot[i], pos[i], T_cap, kv_dim), src = (int64_t)source_row(src_row, i) * kv_dim;
    memcpy(k_cache + dst, k_src + src, row_bytes);
    memcpy(v_cache + dst, v_src + src, row_bytes);
  }
  return DRL_OK;
}

drl_status drl_kv_append(const drl_device *dev, float *k_cache, float *v_cache, const float *k_src, const float *v_src,
                         const int32_t *src_row, const int32_t *slot, const int32_t *pos, int N, int src_rows,
                         int n_slots, int T_cap, int kv_dim) {
  DRL_RANGE("kv_append");
  if (N < 0 || src_rows < 0 || n_slots < 0 || T_cap < 0 || kv_dim <= 0)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_append: bad sizes N=%d src_rows=%d n_slots=%d T_cap=%d kv_dim=%d", N,
                    src_rows, n_slots, T_cap, kv_dim);
  if (N == 0) return DRL_OK;
  if (!k_cache || !v_cache || !k_src || !v_src || !slot || !pos)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_append: NULL buffer");
  DRL_DISPATCH_CUDA(dev, drl_kv_append_cuda(dev, k_cache, v_cache, k_src, v_src, src_row, slot, pos, N, src_rows,
                                            n_slots, T_cap, kv_dim));
  return drl_kv_append_cpu(k_cache, v_cache, k_src, v_src, src_row, slot, pos, N, src_rows, n_slots, T_cap, kv_dim);
}
