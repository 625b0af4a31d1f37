/* CUDA embedding. Backward without atomics: sort (token, n) pairs with CUB's stable radix sort, so each token's
 * positions form a run in increasing n, then one thread per (run, channel) sums its run in that order, starting from
 * dtable's value: exactly the CPU's sequence of adds. */
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#include "check.h"
#include "cuda_launch.cuh"
#include "embedding.h"


static __global__ void embedding_forward_kernel(float *out, const int32_t *tokens, const float *table, int N, int C,
                                                int V) {
  int64_t total = (int64_t)N * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int32_t tok = tokens[i / C];
    out[i] = drl_embedding_token_ok(tok, V) ? table[(int64_t)tok * C + i % C] : __int_as_float(0x7fc00000);
  }
}

/* Sort input: keys are the tokens, a bad one mapped to V so it sorts last and is skipped; values are positions. */
static __global__ void embedding_sort_input_kernel(uint32_t *keys, int32_t *vals, const int32_t *tokens, int N,
                                                   int V) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += gridDim.x * blockDim.x) {
    int32_t tok = tokens[i];
    keys[i] = drl_embedding_token_ok(tok, V) ? (uint32_t)tok : (uint32_t)V;
    vals[i] = i;
  }
}

/* Rows of one run read ahead at a time, so several loads are in flight while the adds stay in order. */
#define EMB_UNROLL 8

/* Block (x, y): sorted position x if it starts a run, channels y*blockDim.x ... Blocks inside a run exit at once. */
static __global__ void embedding_backward_kernel(float *dtable, const float *dout, const uint32_t *keys,
                                                 const int32_t *pos, int N, int C, int V) {
  int c = blockIdx.y * blockDim.x + threadIdx.x;
  for (int i = blockIdx.x; i < N; i += gridDim.x) {
    uint32_t tok = keys[i];
    if ((i > 0 && keys[i - 1] == tok) || tok >= (uint32_t)V || c >= C) continue;
    float *row = dtable + (int64_t)tok * C;
    float acc = row[c];
    for (int64_t r = i;; r += EMB_UNROLL) {
      float g[EMB_UNROLL];
      int cnt = 0;
#pragma unroll
      for (int u = 0; u < EMB_UNROLL; ++u) {
        /* keys are sorted, so once a key differs the run is over */
        int in = r + u < N && keys[r + u] == tok;
        g[u] = in ? dout[(int64_t)pos[r + u] * C + c] : 0.0f;
        cnt += in;
      }
#pragma unroll
      for (int u = 0; u < EMB_UNROLL; ++u)
        if (u < cnt) acc = drl_embedding_acc(acc, g[u]);
      if (cnt < EMB_UNROLL) break;
    }
    row[c] = acc;
  }
}

/* Scratch: four N-element arrays (keys and positions, each double-buffered for CUB), then CUB's temporary storage. */
static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

/* CUB's temporary bytes for N pairs over bits [0, end_bit); a host-side query, no device work. */
static cudaError_t sort_temp_bytes(int N, int end_bit, size_t *bytes) {
  cub::DoubleBuffer<uint32_t> k(nullptr, nullptr);
  cub::DoubleBuffer<int32_t> v(nullptr, nullptr);
  *bytes = 0;
  return cub::DeviceRadixSort::SortPairs(nullptr, *bytes, k, v, N, 0, end_bit);
}

/* Sized for all 32 key bits, so the same scratch serves every vocabulary size. */
extern "C" int64_t drl_embedding_scratch_bytes_cuda(int N) {
  if (N <= 0) return 0;
  size_t temp = 0;
  if (sort_temp_bytes(N, 32, &temp) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return (int64_t)(4 * align256((size_t)N * 4) + align256(temp));
}

extern "C" drl_status drl_embedding_forward_cuda(const drl_device *dev, float *out, const int32_t *tokens,
                                                 const float *table, int N, int C, int V) {
  if (N <= 0 || C <= 0) return DRL_OK;
  embedding_forward_kernel<<<drl_grid_for((int64_t)N * C, 256, 8192), 256, 0, DRL_STREAM(dev)>>>(out, tokens, table, N, C, V);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_embedding_backward_cuda(const drl_device *dev, float *dtable, const float *dout,
                                                  const int32_t *tokens, int N, int C, int V, void *scratch) {
  if (N <= 0 || C <= 0) return DRL_OK;
  const int threads = 128;
  if ((C + threads - 1) / threads > 65535)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_embedding_backward: C=%d too large for the GPU grid", C);
  size_t arr = align256((size_t)N * 4), temp_bytes = 0;
  CUDA_CHECK(sort_temp_bytes(N, 32, &temp_bytes));
  char *base = (char *)scratch;
  uint32_t *keys_a = (uint32_t *)base, *keys_b = (uint32_t *)(base + arr);
  int32_t *vals_a = (int32_t *)(base + 2 * arr), *vals_b = (int32_t *)(base + 3 * arr);
  void *temp = base + 4 * arr;

  embedding_sort_input_kernel<<<drl_grid_for(N, 256, 8192), 256, 0, DRL_STREAM(dev)>>>(keys_a, vals_a, tokens, N, V);
  CUDA_CHECK(cudaGetLastError());
  /* Keys lie in [0, V]: sorting only the bits V needs saves passes. */
  int end_bit = 1;
  while (end_bit < 32 && ((uint64_t)1 << end_bit) <= (uint64_t)V) ++end_bit;
  cub::DoubleBuffer<uint32_t> keys(keys_a, keys_b);
  cub::DoubleBuffer<int32_t> vals(vals_a, vals_b);
  /* temp_bytes was sized for 32 bits; CUB fails cleanly if fewer bits ever needed more. */
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys, vals, N, 0, end_bit, DRL_STREAM(dev)));

  int xblocks = N < 65536 ? N : 65536;
  dim3 grid((unsigned)xblocks, (unsigned)((C + threads - 1) / threads));
  embedding_backward_kernel<<<grid, threads, 0, DRL_STREAM(dev)>>>(dtable, dout, keys.Current(), vals.Current(), N, C, V);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
