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

drl_status drl_embedding_backward_cpu(float *dtable, const float *dout, const int32_t *tokens, int N, int C, int V) {
  DRL_TRY(check_tokens("drl_embedding_backward", tokens, N, V));
  /* Each thread owns a range of channels and sweeps every row once: each (token, channel) sum still runs in
   * increasing n, so the split (and the thread count) cannot change a bit. */
#pragma omp parallel if ((int64_t)N * C > DRL_OMP_MIN_GATHER)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    int64_t blocks = (C + EMB_CHANNEL_ALIGN - 1) / EMB_CHANNEL_ALIGN;
    int c0 = (int)(blocks * t / T * EMB_CHANNEL_ALIGN), c1 = (int)(blocks * (t + 1) / T * EMB_CHANNEL_ALIGN);
    if (c1 > C) c1 = C;
    for (int n = 0; n < N && c0 < c1; ++n) {
      float *row = dtable + (int64_t)tokens[n] * C;
      const float *g = dout + (int64_t)n * C;
      for (int c = c0; c < c1; ++c) row[c] = drl_embedding_acc(row[c], g[c]);
    }
  }
  return DRL_OK;
}

int64_t drl_embedding_scratch_bytes(const drl_device *dev, int N) {
  if (N <= 0 || dev->backend != DRL_BACKEND_CUDA) return 0;
#ifdef DRL_HAVE_CUDA
  return drl_embedding_scratch_bytes_cuda(N);
#else
  return 0; /* the op itself reports the missing backend */
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
  if (dev->backend == DRL_BACKEND_CUDA && !scratch)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "drl_embedding_backward: NULL scratch (needs drl_embedding_scratch_bytes(dev, %d) bytes)", N);
  DRL_DISPATCH_CUDA(dev, drl_embedding_backward_cuda(dev, dtable, dout, tokens, N, C, V, scratch));
  return drl_embedding_backward_cpu(dtable, dout, tokens, N, C, V);
}
