/* CPU attention: plain loops, one (b, head) task per OpenMP iteration in the forward and one (b, kv head) task in the
 * backward, so every output element is computed by one thread in a fixed order and the thread count changes no bit. */
#include "attention.h"

#include "nvtx.h"

static drl_status check_sizes(const char *name, int B, int T, int H, int KV, int D) {
  if (B < 0 || T < 0 || H <= 0 || KV <= 0 || D <= 0)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: bad sizes B=%d T=%d H=%d KV=%d D=%d", name, B, T, H, KV, D);
  if (H % KV)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: %d query heads do not divide into %d kv heads", name, H, KV);
  return DRL_OK;
}

/* row_start is on the host here; the GPU cannot report a bad value, it clamps it (see drl_attention_key_range). */
static drl_status check_row_start(const char *name, const int32_t *row_start, int B, int T) {
  if (!row_start) return DRL_OK;
  for (int b = 0; b < B; ++b)
    if (row_start[b] < 0 || row_start[b] > T)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: row_start[%d] = %d outside [0, T=%d]", name, b, (int)row_start[b],
                      T);
  return DRL_OK;
}

int64_t drl_attention_scratch_floats(const drl_device *dev, int B, int T, int H, int KV, int D) {
  if (B < 0 || T < 0 || H <= 0 || KV <= 0 || D <= 0 || H % KV) return 0;
  if (dev->backend == DRL_BACKEND_CUDA) {
    /* forward: q, k, v permuted (the output reuses q's space); backward: q, k, v, dout permuted, dv, and the
     * [B, H, T, T] score gradient (dq and dk reuse dout's and v's space). The backward is the larger. */
    return (int64_t)B * T * D * (2 * (int64_t)H + 3 * (int64_t)KV) + (int64_t)B * H * T * T;
  }
  return (int64_t)B * KV * T; /* the backward's one row of score gradients per (b, kv head) task */
}

drl_status drl_attention_forward_cpu(float *out, float *att, const float *q, const float *k, const float *v,
                                     const int32_t *row_start, int B, int T, int H, int KV, int D) {
  const int g = H / KV;
  const float scale = drl_attention_scale(D);
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * H; ++bh) {
    int b = bh / H, h = bh % H, kvh = h / g;
    int rs = row_start ? row_start[b] : 0;
    for (int t = 0; t < T; ++t) {
      float *arow = att + ((int64_t)bh * T + t) * T;
      float *o = out + (((int64_t)b * T + t) * H + h) * D;
      const float *qt = q + (((int64_t)b * T + t) * H + h) * D;
      int lo, hi;
      drl_attention_key_range(t, rs, &lo, &hi);
      for (int j = lo; j < hi; ++j) {
        arow[j] = drl_attention_score(qt, k + (((int64_t)b * T + j) * KV + kvh) * D, D, scale);
      }
      drl_softmax_masked_row(arow, T, lo, hi);
      for (int d = 0; d < D; ++d) o[d] = 0.0f;
      for (int j = lo; j < hi; ++j) {
        const float *vj = v + (((int64_t)b * T + j) * KV + kvh) * D;
        for (int d = 0; d < D; ++d) o[d] += arow[j] * vj[d];
      }
    }
  }
  return DRL_OK;
}

drl_status drl_attention_backward_cpu(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                      const float *k, const float *v, const float *att, const int32_t *row_start,
                                      int B, int T, int H, int KV, int D, float *scratch) {
  const int g = H / KV;
  const float scale = drl_attention_scale(D);
  /* One task per (b, kv head): it owns dk and dv of that head and dq of its g query heads, so the sum over the
   * query heads sharing a kv head runs in a fixed order (head, then t, then key) with no atomics. */
#pragma omp parallel for schedule(static)
  for (int bk = 0; bk < B * KV; ++bk) {
    int b = bk / KV, kvh = bk % KV;
    int rs = row_start ? row_start[b] : 0;
    float *ds = scratch + (int64_t)bk * T;
    for (int j = 0; j < T; ++j) {
      float *dkj = dk + (((int64_t)b * T + j) * KV + kvh) * D, *dvj = dv + (((int64_t)b * T + j) * KV + kvh) * D;
      for (int d = 0; d < D; ++d) dkj[d] = dvj[d] = 0.0f;
    }
    for (int r = 0; r < g; ++r) {
      int h = kvh * g + r;
      for (int t = 0; t < T; ++t) {
        const int64_t qrow = (((int64_t)b * T + t) * H + h) * D;
        const float *arow = att + (((int64_t)b * H + h) * T + t) * T;
        const float *go = dout + qrow, *qt = q + qrow;
        float *dqt = dq + qrow;
        for (int d = 0; d < D; ++d) dqt[d] = 0.0f;
        int lo, hi;
        drl_attention_key_range(t, rs, &lo, &hi);
        for (int j = lo; j < hi; ++j) {
          const int64_t kv_row = (((int64_t)b * T + j) * KV + kvh) * D;
          const float *vj = v + kv_row;
          float *dvj = dv + kv_row;
          float s = 0.0f;
          for (int d = 0; d < D; ++d) {
            s += go[d] * vj[d];
            dvj[d] += arow[j] * go[d];
          }
          ds[j] = s; /* d prob */
        }
        drl_softmax_backward_masked_row(arow, ds, ds, hi, lo, hi); /* d score, unscaled */
        for (int j = lo; j < hi; ++j) {
          const int64_t kv_row = (((int64_t)b * T + j) * KV + kvh) * D;
          const float *kj = k + kv_row;
          float *dkj = dk + kv_row;
          for (int d = 0; d < D; ++d) {
            dqt[d] += ds[j] * kj[d];
            dkj[d] += ds[j] * qt[d];
          }
        }
        /* the score scale applied once per sum, as the GPU's GEMM alpha does */
        for (int d = 0; d < D; ++d) dqt[d] *= scale;
      }
    }
    for (int j = 0; j < T; ++j) {
      float *dkj = dk + (((int64_t)b * T + j) * KV + kvh) * D;
      for (int d = 0; d < D; ++d) dkj[d] *= scale;
    }
  }
  return DRL_OK;
}

drl_status drl_attention_forward(const drl_device *dev, float *out, float *att, const float *q, const float *k,
                                 const float *v, const int32_t *row_start, int B, int T, int H, int KV, int D,
                                 float *scratch) {
  DRL_RANGE("attention_forward");
  const char *name = "drl_attention_forward";
  DRL_TRY(check_sizes(name, B, T, H, KV, D));
  if (B == 0 || T == 0) return DRL_OK;
  if (!out || !att || !q || !k || !v) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: NULL buffer", name);
  if (dev->backend == DRL_BACKEND_CUDA && !scratch)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: NULL scratch (drl_attention_scratch_floats gives the size)", name);
  DRL_DISPATCH_CUDA(dev, drl_attention_forward_cuda(dev, out, att, q, k, v, row_start, B, T, H, KV, D, scratch));
  DRL_TRY(check_row_start(name, row_start, B, T));
  return drl_attention_forward_cpu(out, att, q, k, v, row_start, B, T, H, KV, D);
}

drl_status drl_attention_backward(const drl_device *dev, float *dq, float *dk, float *dv, const float *dout,
                                  const float *q, const float *k, const float *v, const float *att,
                                  const int32_t *row_start, int B, int T, int H, int KV, int D, float *scratch) {
  DRL_RANGE("attention_backward");
  const char *name = "drl_attention_backward";
  DRL_TRY(check_sizes(name, B, T, H, KV, D));
  if (B == 0 || T == 0) return DRL_OK;
  if (!dq || !dk || !dv || !dout || !q || !k || !v || !att)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: NULL buffer", name);
  if (!scratch)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: NULL scratch (drl_attention_scratch_floats gives the size)", name);
  DRL_DISPATCH_CUDA(dev, drl_attention_backward_cuda(dev, dq, dk, dv, dout, q, k, v, att, row_start, B, T, H, KV, D,
                                                     scratch));
  DRL_TRY(check_row_start(name, row_start, B, T));
  return drl_attention_backward_cpu(dq, dk, dv, dout, q, k, v, att, row_start, B, T, H, KV, D, scratch);
}
