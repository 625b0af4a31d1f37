#include "embedding.h"

#include <omp.h>
#include <string.h>

#include "nvtx.h"

/* Channel ranges of the parallel backward are whole cache lines (of 64-byte aligned rows): no false sharing. */
#define EMB_CHANNEL_ALIGN 16

/* The first token outside [0, V), so the message can name it; nothing has been written yet. */
static drl_status check_tokens(const char *op, const int32_t *tokens, int N, int V) {
  for (int n = 0; n < N; ++n)
    if (!drl_embedding_token_ok(tokens[n], V))
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: token %d at position %d is outside the vocabulary [0, %d)", op,
                      (int)tokens[n], n, V);
  return DRL_OK;
}

drl_status drl_embedding_forward_cpu(float *out, const int32_t *tokens, const float *table, int N, int C, int V) {
  DRL_TRY(check_tokens("drl_embedding_forward", tokens, N, V));
#pragma omp parallel for schedule(static) if ((int64_t)N * C > DRL_OMP_MIN_GATHER)
  for (int n = 0; n < N; ++n)
    memcpy(out + (int64_t)n * C, table + (int64_t)tokens[n] * C, (size_t)C * sizeof(float));
  return DRL_OK;
}

/* A stable LSD radix sort of (token, n) by token, 8 bits a pass over the bits V - 1 needs: keys and positions in
 * the sorted order of embedding.h, the GPU's sort exactly. *cur: which of the two buffers holds the result. */
static void sort_tokens(uint32_t *keys[2], int32_t *pos[2], const int32_t *tokens, int N, int V, int *cur) {
  for (int n = 0; n < N; ++n) {
    keys[0][n] = (uint32_t)tokens[n];
    pos[0][n] = n;
  }
  int a = 0;
  for (int shift = 0; shift < 32 && ((uint32_t)(V - 1) >> shift) != 0; shift += 8, a ^= 1) {
    int64_t start[256] = {0};
    for (int n = 0; n < N; ++n) ++start[(keys[a][n] >> shift) & 255];
    int64_t sum = 0;
    for (int d = 0; d < 256; ++d) {
      int64_t cnt = start[d];
      start[d] = sum;
      sum += cnt;
    }
    for (int n = 0; n < N; ++n) {
      int64_t to = start[(keys[a][n] >> shift) & 255]++;
      keys[a ^ 1][to] = keys[a][n];
      pos[a ^ 1][to] = pos[a][n];
    }
  }
  *cur = a;
}

drl_status drl_embedding_backward_cpu(float *dtable, const float *dout, const int32_t *tokens, int N, int C, int V,
                                      void *scratch) {
  DRL_TRY(check_tokens("drl_embedding_backward", tokens, N, V));
  if (N <= 0 || C <= 0) return DRL_OK;
  char *base = (char *)scratch;
  int64_t arr = drl_embedding_array_bytes(N);
  uint32_t *keys[2] = {(uint32_t *)base, (uint32_t *)(base + arr)};
  int32_t *pos[2] = {(int32_t *)(base + 2 * arr), (int32_t *)(base + 3 * arr)};
  float *carry = (float *)(base + 4 * arr);
  int cur;
  sort_tokens(keys, pos, tokens, N, V, &cur);
  const uint32_t *k = keys[cur];
  const int32_t *p = pos[cur];
  /* Work items are (chunk, block of channels); every (token, channel) sum has one order whatever the split, so the
   * thread count cannot change a bit. */
  int chunks = (int)(((int64_t)N + DRL_EMBEDDING_CHUNK - 1) / DRL_EMBEDDING_CHUNK);
  int cblocks = (C + EMB_CHANNEL_ALIGN - 1) / EMB_CHANNEL_ALIGN;
  int64_t items = (int64_t)chunks * cblocks;
#pragma omp parallel if ((int64_t)N * C > DRL_OMP_MIN_GATHER)
  {
#pragma omp for schedule(static)
    for (int64_t w = 0; w < items; ++w) {
      int j = (int)(w / cblocks), c0 = (int)(w % cblocks) * EMB_CHANNEL_ALIGN;
      int c1 = C - c0 > EMB_CHANNEL_ALIGN ? c0 + EMB_CHANNEL_ALIGN : C;
      for (int c = c0; c < c1; ++c) drl_embedding_carry(carry, k, p, dout, N, C, V, j, c);
    }
    /* the loop's barrier: every carry is in place before a chunk reads the later ones */
#pragma omp for schedule(static)
    for (int64_t w = 0; w < items; ++w) {
      int j = (int)(w / cblocks), c0 = (int)(w % cblocks) * EMB_CHANNEL_ALIGN;
      int c1 = C - c0 > EMB_CHANNEL_ALIGN ? c0 + EMB_CHANNEL_ALIGN : C;
      for (int c = c0; c < c1; ++c) drl_embedding_chunk(dtable, carry, k, p, dout, N, C, V, j, c);
    }
  }
  return DRL_OK;
}

int64_t drl_embedding_scratch_bytes(const drl_device *dev, int N, int C) {
  if (N <= 0 || C <= 0) return 0;
  int64_t bytes = 4 * drl_embedding_array_bytes(N) + drl_embedding_carry_bytes(N, C);
  if (dev->backend != DRL_BACKEND_CUDA) return bytes;
#ifdef DRL_HAVE_CUDA
  int64_t temp = drl_embedding_sort_temp_bytes_cuda(N);
  return temp < 0 ? -1 : bytes + temp;
#else
  return bytes; /* the op itself reports the missing backend */
#endif
}

static drl_status check_sizes(const char *op, int N, int C, int V) {
  if (N < 0 || C < 0 || V < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: negative size N=%d C=%d V=%d", op, N, C, V);
  return DRL_OK;
}

drl_status drl_embedding_forward(const drl_device *dev, float *out, const int32_t *tokens, const float *table, int N,
                                 int C, int V) {
  DRL_RANGE("embedding_forward");
  DRL_TRY(check_sizes("drl_embedding_forward", N, C, V));
  if (N == 0) return DRL_OK;
  if (!tokens) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_embedding_forward: NULL tokens for N=%d", N);
  if (C > 0 && (!out || !table))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_embedding_forward: NULL buffer (out %p, table %p)", (void *)out,
                    (const void *)table);
  DRL_DISPATCH_CUDA(dev, drl_embedding_forward_cuda(dev, out, tokens, table, N, C, V));
  return drl_embedding_forward_cpu(out, tokens, table, N, C, V);
}

drl_status drl_embedding_backward(const drl_device *dev, float *dtable, const float *dout, const int32_t *tokens,
                                  int N, int C, int V, void *scratch) {
  DRL_RANGE("embedding_backward");
  DRL_TRY(check_sizes("drl_embedding_backward", N, C, V));
  if (N == 0) return DRL_OK;
  if (!tokens) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_embedding_backward: NULL tokens for N=%d", N);
  if (C > 0 && (!dtable || !dout))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_embedding_backward: NULL buffer (dtable %p, dout %p)", (void *)dtable,
                    (const void *)dout);
  if (C > 0 && !scratch)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "drl_embedding_backward: NULL scratch (needs drl_embedding_scratch_bytes(dev, %d, %d) bytes)", N,
                    C);
  DRL_DISPATCH_CUDA(dev, drl_embedding_backward_cuda(dev, dtable, dout, tokens, N, C, V, scratch));
  return drl_embedding_backward_cpu(dtable, dout, tokens, N, C, V, scratch);
}
