/* CPU time embedding: rows in parallel over the shared math of time_embed.h (elementwise: no thread-count effect). */
#include "time_embed.h"

#include <math.h>

#include "nvtx.h"

drl_status drl_time_embed_cpu(float *out, const float *t, const float *freq, int64_t rows, int half) {
#pragma omp parallel for schedule(static) if (rows * half > DRL_OMP_MIN_MATH)
  for (int64_t r = 0; r < rows; ++r) {
    float *o = out + r * 2 * half;
    for (int k = 0; k < half; ++k) drl_time_embed_pair(t[r], freq[k], &o[2 * k], &o[2 * k + 1]);
  }
  return DRL_OK;
}

drl_status drl_time_embed(const drl_device *dev, float *out, const float *t, const float *freq, int64_t rows,
                          int half) {
  DRL_RANGE("time_embed");
  if (rows < 0 || half < 1)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_time_embed: rows=%lld half=%d (need rows >= 0, half >= 1)",
                    (long long)rows, half);
  if (rows > INT64_MAX / (2 * (int64_t)half))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_time_embed: rows=%lld x 2 half=%d overflows the index range",
                    (long long)rows, 2 * half);
  if (rows == 0) return DRL_OK;
  if (!out || !t || !freq)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_time_embed: NULL buffer (out %p, t %p, freq %p)", (void *)out,
                    (const void *)t, (const void *)freq);
  DRL_DISPATCH_CUDA(dev, drl_time_embed_cuda(dev, out, t, freq, rows, half));
  return drl_time_embed_cpu(out, t, freq, rows, half);
}

void drl_time_embed_freqs(float *freq, int half, double max_freq) {
  if (!freq || half < 1) return;
  freq[0] = 1.0f;
  for (int k = 1; k < half; ++k) freq[k] = (float)pow(max_freq, (double)k / (double)(half - 1));
}
