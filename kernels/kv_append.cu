/* CUDA KV append: one thread per copied float pair (k and v), grid-stride; neighbouring threads copy neighbouring
 * floats of a row, so reads and writes are coalesced. */
#include <cuda_runtime.h>

#include "check.h"
#include "kv_append.h"

static __global__ void kv_append_kernel(float *k_cache, float *v_cache, const float *k_src, const float *v_src,
                                        const int32_t *src_row, const int32_t *slot, const int32_t *pos, int N,
                                        int src_rows, int n_slots, int T_cap, int kv_dim) {
  int64_t n = (int64_t)N * kv_dim;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int i = (int)(e / kv_dim), c = (int)(e - (int64_t)i * kv_dim);
    int src = src_row ? src_row[i] : i;
    if (!drl_kv_entry_ok(src, slot[i], pos[i], src_rows, n_slots, T_cap)) continue; /* out of contract: no stray write */
    int64_t dst = drl_kv_offset(slot[i], pos[i], T_cap, kv_dim) + c;
    k_cache[dst] = k_src[(int64_t)src * kv_dim + c];
    v_cache[dst] = v_src[(int64_t)src * kv_dim + c];
  }
}

extern "C" drl_status drl_kv_append_cuda(const drl_device *dev, float *k_cache, float *v_cache, const float *k_src,
                                         const float *v_src, const int32_t *src_row, const int32_t *slot,
                                         const int32_t *pos, int N, int src_rows, int n_slots, int T_cap,
                                         int kv_dim) {
  int64_t n = (int64_t)N * kv_dim;
  if (n == 0) return DRL_OK;
  const int threads = 256;
  int64_t want = (n + threads - 1) / threads;
  int blocks = (int)(want < 65535 * 8 ? want : 65535 * 8);
  kv_append_kernel<<<blocks, threads, 0, (cudaStream_t)dev->stream>>>(k_cache, v_cache, k_src, v_src, src_row, slot,
                                                                       pos, N, src_rows, n_slots, T_cap, kv_dim);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
