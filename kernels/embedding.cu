/* CUDA embedding. Backward without atomics: sort (token, n) pairs with CUB's stable radix sort, then the two chunked
 * stages of embedding.h (chunk partial sums, then each run summed and written by the chunk where it starts), one
 * thread per (chunk, channel) calling the functions the CPU calls: exactly the CPU's sequence of adds. */
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

/* Block (j, y): chunk j, channels y*blockDim.x ...; a block's threads read the same keys and positions (broadcast)
 * and neighbouring channels of the same rows (coalesced). */
static __global__ void embedding_carry_kernel(float *carry, const uint32_t *keys, const int32_t *pos,
                                              const float *dout, int N, int C, int V) {
  int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c < C) drl_embedding_carry(carry, keys, pos, dout, N, C, V, (int)blockIdx.x, c);
}

static __global__ void embedding_chunk_kernel(float *dtable, const float *carry, const uint32_t *keys,
                                              const int32_t *pos, const float *dout, int N, int C, int V) {
  int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c < C) drl_embedding_chunk(dtable, carry, keys, pos, dout, N, C, V, (int)blockIdx.x, c);
}

/* CUB's temporary bytes for N pairs over bits [0, end_bit); a host-side query, no device work. */
static cudaError_t sort_temp_bytes(int N, int end_bit, size_t *bytes) {
  cub::DoubleBuffer<uint32_t> k(nullptr, nullptr);
  cub::DoubleBuffer<int32_t> v(nullptr, nullptr);
  *bytes = 0;
  return cub::DeviceRadixSort::SortPairs(nullptr, *bytes, k, v, N, 0, end_bit);
}

/* Sized for all 32 key bits, so the same scratch serves every vocabulary size. */
extern "C" int64_t drl_embedding_sort_temp_bytes_cuda(int N) {
  if (N <= 0) return 0;
  size_t temp = 0;
  if (sort_temp_bytes(N, 32, &temp) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return (int64_t)((temp + 255) & ~(size_t)255);
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
  size_t arr = (size_t)drl_embedding_array_bytes(N), temp_bytes = 0;
  CUDA_CHECK(sort_temp_bytes(N, 32, &temp_bytes));
  char *base = (char *)scratch;
  uint32_t *keys_a = (uint32_t *)base, *keys_b = (uint32_t *)(base + arr);
  int32_t *vals_a = (int32_t *)(base + 2 * arr), *vals_b = (int32_t *)(base + 3 * arr);
  float *carry = (float *)(base + 4 * arr);
  void *temp = base + 4 * arr + drl_embedding_carry_bytes(N, C);

  embedding_sort_input_kernel<<<drl_grid_for(N, 256, 8192), 256, 0, DRL_STREAM(dev)>>>(keys_a, vals_a, tokens, N, V);
  CUDA_CHECK(cudaGetLastError());
  /* Keys lie in [0, V]: sorting only the bits V needs saves passes. */
  int end_bit = 1;
  while (end_bit < 32 && ((uint64_t)1 << end_bit) <= (uint64_t)V) ++end_bit;
  cub::DoubleBuffer<uint32_t> keys(keys_a, keys_b);
  cub::DoubleBuffer<int32_t> vals(vals_a, vals_b);
  /* temp_bytes was sized for 32 bits; CUB fails cleanly if fewer bits ever needed more. */
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys, vals, N, 0, end_bit, DRL_STREAM(dev)));

  int chunks = (int)(((int64_t)N + DRL_EMBEDDING_CHUNK - 1) / DRL_EMBEDDING_CHUNK);
  dim3 grid((unsigned)chunks, (unsigned)((C + threads - 1) / threads));
  /* Stage 1 reads no carry and stage 2 reads the carries of later chunks: two launches on one stream order them. */
  if (chunks > 1) {
    embedding_carry_kernel<<<grid, threads, 0, DRL_STREAM(dev)>>>(carry, keys.Current(), vals.Current(), dout, N, C, V);
    CUDA_CHECK(cudaGetLastError());
  }
  embedding_chunk_kernel<<<grid, threads, 0, DRL_STREAM(dev)>>>(dtable, carry, keys.Current(), vals.Current(), dout, N,
                                                                C, V);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
