/* CPU LM head: logits for a chunk of rows by drl_gemm into scratch, then one thread per row runs the shared online
 * log-sum-exp (lm_head.h) in the GPU's lane layout and merge tree, so a row's result depends on its logits only
 * (not on chunking or thread count) and the CPU checks the GPU's order of operations. */
#include "lm_head.h"

#include "gemm.h"
#include "nvtx.h"

static drl_status check_args(const char *fn, const float *x, const float *W, const float *scratch, int N, int C,
                             int V, float temperature, int chunk_rows) {
  if (N < 0 || C < 0 || V < 1)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: bad sizes N=%d C=%d V=%d (need N >= 0, C >= 0, V >= 1)", fn, N, C, V);
  if (chunk_rows < 1) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: chunk_rows=%d must be >= 1", fn, chunk_rows);
  if (!(temperature > 0.0f) || !isfinite(temperature))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: temperature %g must be positive and finite", fn, (double)temperature);
  if (N > 0 && (!x || !W || !scratch))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: NULL x, W or scratch", fn);
  return DRL_OK;
}

/* Targets are host memory on the CPU: validate them before any work, so a bad one leaves the outputs untouched. */
static drl_status check_targets(const char *fn, const int32_t *targets, int N, int V) {
  if (N > 0 && !targets) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: NULL targets", fn);
  for (int n = 0; n < N; ++n)
    if (targets[n] >= V)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: targets[%d] = %d is outside the vocabulary (V = %d)", fn, n,
                      (int)targets[n], V);
  return DRL_OK;
}

/* One warp's shuffle tree, sequentially: the merge of a[0, 32) ends in a[0]. */
static void warp_tree(drl_lse *a) {
  for (int off = 16; off > 0; off >>= 1)
    for (int l = 0; l < off; ++l) a[l] = drl_lse_merge(a[l], a[l + off]);
}

static drl_lse row_stats(const float *z, int V) {
  drl_lse a[512], w[32];
  int lanes = drl_lm_head_lanes(V), groups = lanes / 32;
  for (int l = 0; l < lanes; ++l) a[l] = drl_lse_empty();
  for (int j = 0; j < V; ++j) drl_lse_push(&a[j & (lanes - 1)], z[j]); /* lanes is a power of two */
  for (int g = 0; g < 32; ++g) {
    if (g < groups) warp_tree(a + 32 * g);
    w[g] = g < groups ? a[32 * g] : drl_lse_empty();
  }
  warp_tree(w);
  return w[0];
}

/* Logits of rows [r0, r0 + R) into scratch [R, V]. */
static drl_status chunk_logits(const drl_device *dev, float *scratch, const float *x, const float *W, int r0, int R,
                               int C, int V, float temperature) {
  return drl_gemm(dev, 0, 1, R, V, C, 1.0f / temperature, x + (int64_t)r0 * C, C, W, C, 0.0f, scratch, V);
}

static drl_status lm_head_forward_cpu(const drl_device *dev, float *logprob, float *entropy, const float *x,
                                      const float *W, const int32_t *targets, int N, int C, int V, float temperature,
                                      float *scratch, int chunk_rows) {
  for (int r0 = 0; r0 < N; r0 += chunk_rows) {
    int R = N - r0 < chunk_rows ? N - r0 : chunk_rows;
    DRL_TRY(chunk_logits(dev, scratch, x, W, r0, R, C, V, temperature));
#pragma omp parallel for schedule(static)
    for (int i = 0; i < R; ++i) {
      const float *z = scratch + (int64_t)i * V;
      drl_lse a = row_stats(z, V);
      int n = r0 + i;
      if (logprob) logprob[n] = targets[n] < 0 ? 0.0f : drl_lse_logprob(a, z[targets[n]]);
      if (entropy) entropy[n] = drl_lse_entropy(a);
    }
  }
  return DRL_OK;
}

static drl_status lm_head_backward_cpu(const drl_device *dev, float *dx, float *dW, const float *dlogprob,
                                       const float *x, const float *W, const int32_t *targets, int N, int C, int V,
                                       float temperature, float *scratch, int chunk_rows) {
  for (int r0 = 0; r0 < N; r0 += chunk_rows) {
    int R = N - r0 < chunk_rows ? N - r0 : chunk_rows;
    DRL_TRY(chunk_logits(dev, scratch, x, W, r0, R, C, V, temperature));
    /* Each row's logits become its dlogits in place. */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < R; ++i) {
      float *z = scratch + (int64_t)i * V;
      int n = r0 + i, tg = targets[n];
      if (tg < 0) {
        for (int j = 0; j < V; ++j) z[j] = 0.0f;
        continue;
      }
      drl_lse a = row_stats(z, V);
      float log_s = logf(a.s), g = dlogprob[n] / temperature;
      for (int j = 0; j < V; ++j) z[j] = drl_lm_head_dlogit(z[j], a.m, log_s, j == tg, g);
    }
    /* dx = dlogits W (overwrite), dW += dlogits^T x. */
    if (dx) DRL_TRY(drl_gemm(dev, 0, 0, R, C, V, 1.0f, scratch, V, W, C, 0.0f, dx + (int64_t)r0 * C, C));
    if (dW) DRL_TRY(drl_gemm(dev, 1, 0, V, C, R, 1.0f, scratch, V, x + (int64_t)r0 * C, C, 1.0f, dW, C));
  }
  return DRL_OK;
}

int64_t drl_lm_head_scratch_floats(const drl_device *dev, int chunk_rows, int V) {
  (void)dev; /* the same on both backends: one chunk of logits, reused in place for the dlogits */
  return chunk_rows > 0 && V > 0 ? (int64_t)chunk_rows * V : 0;
}

drl_status drl_lm_head_forward(const drl_device *dev, float *logprob, float *entropy, const float *x, const float *W,
                               const int32_t *targets, int N, int C, int V, float temperature, float *scratch,
                               int chunk_rows) {
  DRL_RANGE("lm_head_forward");
  DRL_TRY(check_args("drl_lm_head_forward", x, W, scratch, N, C, V, temperature, chunk_rows));
  if (logprob && N > 0 && !targets)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_lm_head_forward: logprob requested with NULL targets");
  if (N == 0 || (!logprob && !entropy)) return DRL_OK;
  DRL_DISPATCH_CUDA(dev, drl_lm_head_forward_cuda(dev, logprob, entropy, x, W, targets, N, C, V, temperature, scratch,
                                                  chunk_rows));
  if (logprob) DRL_TRY(check_targets("drl_lm_head_forward", targets, N, V));
  return lm_head_forward_cpu(dev, logprob, entropy, x, W, targets, N, C, V, temperature, scratch, chunk_rows);
}

drl_status drl_lm_head_backward(const drl_device *dev, float *dx, float *dW, const float *dlogprob, const float *x,
                                const float *W, const int32_t *targets, int N, int C, int V, float temperature,
                                float *scratch, int chunk_rows) {
  DRL_RANGE("lm_head_backward");
  DRL_TRY(check_args("drl_lm_head_backward", x, W, scratch, N, C, V, temperature, chunk_rows));
  if (N > 0 && (!dlogprob || !targets))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_lm_head_backward: NULL dlogprob or targets");
  if (N == 0 || (!dx && !dW)) return DRL_OK;
  DRL_DISPATCH_CUDA(dev, drl_lm_head_backward_cuda(dev, dx, dW, dlogprob, x, W, targets, N, C, V, temperature, scratch,
                                                   chunk_rows));
  DRL_TRY(check_targets("drl_lm_head_backward", targets, N, V));
  return lm_head_backward_cpu(dev, dx, dW, dlogprob, x, W, targets, N, C, V, temperature, scratch, chunk_rows);
}
