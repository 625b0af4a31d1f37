#include "rope.h"

#include <math.h>

#include "nvtx.h"

void drl_rope_tables(float *cos_t, float *sin_t, int max_pos, int D, double theta) {
  int half = D / 2;
  for (int i = 0; i < half; ++i) {
    double inv_freq = pow(theta, -2.0 * (double)i / (double)D);
    for (int p = 0; p < max_pos; ++p) {
      double ang = (double)p * inv_freq;
      cos_t[(int64_t)p * half + i] = (float)cos(ang);
      sin_t[(int64_t)p * half + i] = (float)sin(ang);
    }
  }
}

void drl_rope_inv_freq(float *inv, int D, double theta) {
  float base = (float)theta;
  for (int i = 0; i < D / 2; ++i) {
    float e = (float)(2 * i) / (float)D; /* torch.arange(0, D, 2).float() / D */
    float p = (float)pow((double)base, (double)e);
    inv[i] = 1.0f / p;
  }
}

void drl_rope_scale_linear(float *inv, int half, float factor) {
  for (int i = 0; i < half; ++i) inv[i] = inv[i] / factor;
}

void drl_rope_scale_llama3(float *inv, int half, float factor, float low, float high, int orig) {
  /* transformers mixes Python floats (doubles) and fp32 tensors: the wavelength bounds and high - low are Python
   * arithmetic, and a tensor op converts its Python operand to float first, then rounds its result to fp32.
   * "2 pi / inv" is reciprocal(inv) * 2 pi in torch, and so is "orig / wl". */
  float low_wl = (float)((double)orig / (double)low), high_wl = (float)((double)orig / (double)high);
  float span = (float)((double)high - (double)low), two_pi = (float)6.283185307179586, orig_f = (float)orig;
  for (int i = 0; i < half; ++i) {
    float x = inv[i];
    float wl = drl_fmul(1.0f / x, two_pi);
    if (wl < high_wl) continue; /* high frequency: kept */
    if (wl > low_wl) {          /* low frequency: scaled */
      inv[i] = x / factor;
      continue;
    }
    float s = drl_fadd(drl_fmul(1.0f / wl, orig_f), -low) / span;
    inv[i] = drl_fadd(drl_fmul(drl_fadd(1.0f, -s), x) / factor, drl_fmul(s, x));
  }
}

void drl_rope_tables_from_inv(float *cos_t, float *sin_t, int max_pos, int D, const float *inv) {
  int half = D / 2;
  for (int i = 0; i < half; ++i)
    for (int p = 0; p < max_pos; ++p) {
      float ang = drl_fmul((float)p, inv[i]);
      cos_t[(int64_t)p * half + i] = (float)cos((double)ang);
      sin_t[(int64_t)p * half + i] = (float)sin((double)ang);
    }
}

drl_status drl_rope_cpu(float *x, const int32_t *pos, const float *cos_t, const float *sin_t, int N, int heads, int D,
                        int inverse) {
  /* Checked before anything is rotated, so a bad position leaves x untouched. */
  for (int n = 0; n < N; ++n)
    if (pos[n] < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "rope: row %d has negative position %d", n, (int)pos[n]);
  int half = D / 2;
  /* Every pair is rotated by one thread from its own inputs, so the thread count cannot change a bit. */
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float *c = cos_t + (int64_t)pos[n] * half, *s = sin_t + (int64_t)pos[n] * half;
    for (int h = 0; h < heads; ++h) {
      float *row = x + ((int64_t)n * heads + h) * D;
      for (int i = 0; i < half; ++i) drl_rope_rotate(&row[i], &row[i + half], c[i], inverse ? -s[i] : s[i]);
    }
  }
  return DRL_OK;
}

static drl_status rope(const drl_device *dev, float *x, const int32_t *pos, const float *cos_t, const float *sin_t,
                       int N, int heads, int D, int inverse) {
  const char *name = inverse ? "drl_rope_backward" : "drl_rope_forward";
  if (N < 0 || heads < 0 || D <= 0 || D % 2)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: need N, heads >= 0 and an even D > 0 (N=%d heads=%d D=%d)", name, N,
                    heads, D);
  if (N == 0 || heads == 0) return DRL_OK;
  if (!x || !pos || !cos_t || !sin_t) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: NULL buffer", name);
  DRL_DISPATCH_CUDA(dev, drl_rope_cuda(dev, x, pos, cos_t, sin_t, N, heads, D, inverse));
  return drl_rope_cpu(x, pos, cos_t, sin_t, N, heads, D, inverse);
}

drl_status drl_rope_forward(const drl_device *dev, float *x, const int32_t *pos, const float *cos_t,
                            const float *sin_t, int N, int heads, int D) {
  DRL_RANGE("rope_forward");
  return rope(dev, x, pos, cos_t, sin_t, N, heads, D, 0);
}

drl_status drl_rope_backward(const drl_device *dev, float *dx, const int32_t *pos, const float *cos_t,
                             const float *sin_t, int N, int heads, int D) {
  DRL_RANGE("rope_backward");
  return rope(dev, dx, pos, cos_t, sin_t, N, heads, D, 1);
}
