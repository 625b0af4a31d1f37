/* CUDA decode attention: one warp per (query row, head). Lanes take key columns lo + lane, lo + lane + 32, ... for the
 * scores (drl_attention_score, the CPU's per-key arithmetic) and the masked softmax (drl_softmax_weight), with
 * butterfly max and sum; then lanes take output dimensions d = lane, lane + 32, ... and sum over the keys in
 * increasing order (drl_attention_out_acc), so value reads are coalesced. A column below P is read from the group's
 * prefix, the others from the row's own suffix (drl_decode_key). Against the CPU only the order of the softmax sum and
 * CUDA's expf differ. Scores live in the scratch row of the (row, head): written and read by the same warp. */
#include <cuda_runtime.h>

#include "attention_decode.h"
#include "check.h"

#define FULL_MASK 0xffffffffu

static __device__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(FULL_MASK, x, o));
  return x;
}
static __device__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(FULL_MASK, x, o);
  return x;
}

/* (row, head) pairs are warp-uniform, so whole warps skip or exit together and every shuffle sees all 32 lanes. */
static __global__ void attention_decode_kernel(float *out, const float *q, drl_decode_kv kv, const int32_t *grp,
                                               const int32_t *slot, const int32_t *pos, int N, int H, int KV, int D,
                                               float *scratch) {
  const int lane = threadIdx.x & 31, g = H / KV, T_cap = kv.P + kv.S_cap;
  const float scale = drl_attention_scale(D);
  const int64_t pairs = (int64_t)N * H;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t ih = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); ih < pairs; ih += warps) {
    int i = (int)(ih / H), h = (int)(ih % H);
    int gr = grp[i], s = slot[i], t = pos[i];
    if (gr < 0 || gr >= kv.n_groups || s < 0 || s >= kv.n_slots || t < 0 || t >= T_cap)
      continue; /* out of contract (the CPU reports it) */
    int rs = kv.row_start[gr];
    rs = rs < T_cap ? rs : T_cap; /* drl_attention_key_range clamps below */
    int lo, hi;
    drl_attention_key_range(t, rs, &lo, &hi);
    const float *qr = q + ih * D;
    float *row = scratch + ih * T_cap, *o = out + ih * D;
    float mx = -INFINITY;
    for (int j = lo + lane; j < hi; j += 32) {
      float sc = drl_attention_score(qr, drl_decode_key(kv.kp, kv.ks, &kv, gr, s, h / g, KV, D, j), D, scale);
      row[j] = sc;
      mx = fmaxf(mx, sc);
    }
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lo + lane; j < hi; j += 32) {
      float w = drl_softmax_weight(row[j], mx);
      row[j] = w;
      sum += w;
    }
    sum = warp_sum(sum);
    float inv = lo < hi ? 1.0f / sum : 0.0f;
    __syncwarp(); /* every lane's weights are in the row before any lane reads them all */
    for (int d = lane; d < D; d += 32) {
      float acc = 0.0f;
      for (int j = lo; j < hi; ++j)
        acc = drl_attention_out_acc(acc, drl_fmul(row[j], inv),
                                    drl_decode_key(kv.vp, kv.vs, &kv, gr, s, h / g, KV, D, j)[d]);
      o[d] = acc;
    }
  }
}

extern "C" drl_status drl_attention_decode_cuda(const drl_device *dev, float *out, const float *q,
                                                const drl_decode_kv *kv, const int32_t *grp, const int32_t *slot,
                                                const int32_t *pos, int N, int H, int KV, int D, float *scratch) {
  int64_t pairs = (int64_t)N * H;
  if (pairs == 0) return DRL_OK;
  const int threads = 128; /* 4 warps, one (row, head) each */
  int64_t want = (pairs + 3) / 4;
  int blocks = (int)(want < 65535 * 8 ? want : 65535 * 8);
  attention_decode_kernel<<<blocks, threads, 0, (cudaStream_t)dev->stream>>>(out, q, *kv, grp, slot, pos, N, H, KV,
                                                                             D, scratch);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
