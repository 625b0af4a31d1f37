#include "flow.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/adamw.h"
#include "kernels/bias.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/nvtx.h"
#include "kernels/reduce.h"
#include "kernels/rng_fill.h"
#include "kernels/silu.h"
#include "kernels/time_embed.h"
#include "models/carve.h"

/* Table indices: the embedding, the first layer's three input matrices and bias, (w, b) per further layer, the
 * output layer. */
enum { T_COND_EMB, T_W_X, T_W_T, T_W_C, T_B0 };
static int w_index(int layer) { return T_B0 - 1 + 2 * layer; } /* layer >= 1 */
static int out_index(const drl_flow_config *c) { return T_B0 + 1 + 2 * (c->layers - 1); }

static float *W(const drl_flow *m, int i) { return m->ps.params + m->ps.layout.tensors[i].offset; }
static float *G(const drl_flow *m, int i) { return m->ps.grads + m->ps.layout.tensors[i].offset; }

drl_status drl_flow_config_check(const drl_flow_config *c) {
  if (c->dim < 1 || c->n_cond < 1 || c->cond_dim < 1 || c->time_features < 2 || c->time_features % 2 != 0 ||
      c->hidden < 1 || c->layers < 1)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "flow: dim %d, conditions %d, cond_dim %d, hidden %d, layers %d must be >= 1 and time_features %d "
                    "even and >= 2",
                    c->dim, c->n_cond, c->cond_dim, c->hidden, c->layers, c->time_features);
  if (!(c->init_std >= 0.0f) || !(c->max_freq > 0.0f))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "flow: init_std must be >= 0 and max_freq > 0");
  return DRL_OK;
}

drl_status drl_flow_layout(const drl_flow_config *c, drl_layout *lay) {
  memset(lay, 0, sizeof *lay);
  DRL_TRY(drl_flow_config_check(c));
  DRL_TRY(drl_layout_init(lay, out_index(c) + 2));
  int64_t H = c->hidden;
  drl_status st = drl_layout_add(lay, "cond_emb", c->n_cond, c->cond_dim, 1);
  if (st == DRL_OK) st = drl_layout_add(lay, "l0.w_x", H, c->dim, 1);
  if (st == DRL_OK) st = drl_layout_add(lay, "l0.w_t", H, c->time_features, 1);
  if (st == DRL_OK) st = drl_layout_add(lay, "l0.w_c", H, c->cond_dim, 1);
  if (st == DRL_OK) st = drl_layout_add(lay, "l0.b", H, 1, 0);
  for (int l = 1; st == DRL_OK && l < c->layers; ++l) {
    char name[DRL_TENSOR_NAME_CAP];
    snprintf(name, sizeof name, "l%d.w", l);
    st = drl_layout_add(lay, name, H, H, 1);
    snprintf(name, sizeof name, "l%d.b", l);
    if (st == DRL_OK) st = drl_layout_add(lay, name, H, 1, 0);
  }
  if (st == DRL_OK) st = drl_layout_add(lay, "out.w", c->dim, H, 1);
  if (st == DRL_OK) st = drl_layout_add(lay, "out.b", c->dim, 1, 0);
  if (st != DRL_OK) drl_layout_free(lay);
  return st;
}

static size_t carve(drl_flow *m, void *base) {
  const drl_flow_config *c = &m->cfg;
  drl_carve cv = {(char *)base, 0};
  size_t R = (size_t)m->rows_max, H = (size_t)c->hidden, f = sizeof(float);
  m->x = (float *)drl_carve_take(&cv, R * (size_t)c->dim * f);
  m->temb = (float *)drl_carve_take(&cv, R * (size_t)c->time_features * f);
  m->cemb = (float *)drl_carve_take(&cv, R * (size_t)c->cond_dim * f);
  m->freq = (float *)drl_carve_take(&cv, (size_t)c->time_features / 2 * f);
  m->cond = (int32_t *)drl_carve_take(&cv, R * sizeof(int32_t));
  m->pre = (float *)drl_carve_take(&cv, (size_t)c->layers * R * H * f);
  m->act = (float *)drl_carve_take(&cv, (size_t)c->layers * R * H * f);
  m->dact = (float *)drl_carve_take(&cv, R * H * f);
  m->dpre = (float *)drl_carve_take(&cv, R * H * f);
  m->dcemb = (float *)drl_carve_take(&cv, R * (size_t)c->cond_dim * f);
  /* >= 0: create checked */
  m->emb_scratch = drl_carve_take(&cv, (size_t)drl_embedding_scratch_bytes(&m->dev, (int)R, c->cond_dim));
  return cv.used;
}

static drl_status init_params(drl_flow *m, uint64_t seed) {
  int64_t n = m->ps.layout.total;
  float *host = NULL;
  DRL_TRY(drl_host_alloc((void **)&host, (size_t)n * sizeof(float), "initial flow parameters (host copy)"));
  drl_rng_stream s = {seed, 0, drl_rng_tag(DRL_RNG_INIT, DRL_UID_INIT_FLOW, 0)};
  drl_status st = drl_rng_fill_cpu(host, (uint64_t)n, s, 0, DRL_DIST_NORMAL);
  for (int i = 0; st == DRL_OK && i < m->ps.layout.count; ++i) {
    const drl_tensor_info *t = &m->ps.layout.tensors[i];
    for (int64_t j = 0; j < t->shape[0] * t->shape[1]; ++j)
      host[t->offset + j] = t->shape[1] == 1 ? 0.0f : host[t->offset + j] * m->cfg.init_std;
  }
  if (st == DRL_OK) st = drl_copy_to_device(&m->dev, m->ps.params, host, (size_t)n * sizeof(float));
  /* The time features' frequencies, once. */
  int half = m->cfg.time_features / 2;
  float *freq = (float *)malloc((size_t)half * sizeof(float));
  if (st == DRL_OK && !freq) st = DRL_FAIL(DRL_ERR_OOM, "out of host memory for time frequencies");
  if (st == DRL_OK) {
    drl_time_embed_freqs(freq, half, m->cfg.max_freq);
    st = drl_copy_to_device(&m->dev, m->freq, freq, (size_t)half * sizeof(float));
  }
  if (st == DRL_OK) st = drl_device_sync(&m->dev);
  free(freq);
  free(host);
  return st;
}

drl_status drl_flow_create(drl_flow *m, const drl_flow_config *cfg, const drl_device *dev, int rows_max,
                           uint64_t seed) {
  memset(m, 0, sizeof *m);
  if (rows_max < 1) return DRL_FAIL(DRL_ERR_INVALID_ARG, "flow: rows_max %d must be >= 1", rows_max);
  m->cfg = *cfg;
  m->dev = *dev;
  m->rows_max = rows_max;
  /* CUB sizes its sorts at run time: a size it refuses is an error here, never a scratch of 0 bytes. */
  if (drl_embedding_scratch_bytes(dev, rows_max, cfg->cond_dim) < 0)
    return DRL_FAIL(DRL_ERR_UNSUPPORTED, "flow: the condition embedding's sort of %d rows cannot be sized", rows_max);
  drl_layout layout;
  DRL_TRY(drl_flow_layout(cfg, &layout));
  DRL_TRY(drl_params_create(&m->ps, dev, &layout, "flow "));
  drl_status st = DRL_OK;
  DRL_TRY_GOTO(drl_alloc(dev, &m->block, carve(m, NULL), "flow activations"));
  carve(m, m->block);
  DRL_TRY_GOTO(init_params(m, seed));
done:
  if (st != DRL_OK) drl_flow_free(m);
  return st;
}

void drl_flow_free(drl_flow *m) {
  if (!m) return;
  drl_free(&m->dev, m->block);
  drl_params_free(&m->ps);
  memset(m, 0, sizeof *m);
}

drl_status drl_flow_forward(drl_flow *m, const float *x, const float *t, const int32_t *cond, int rows, float *v) {
  DRL_RANGE("flow_forward");
  const drl_flow_config *c = &m->cfg;
  if (rows < 1 || rows > m->rows_max)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "flow: %d points outside 1..%d", rows, m->rows_max);
  const drl_device *d = &m->dev;
  int H = c->hidden, D = c->dim;
  size_t RH = (size_t)rows * H;
  m->rows = rows;
  DRL_TRY(drl_copy_on_device(d, m->x, x, (size_t)rows * D * sizeof(float)));
  DRL_TRY(drl_copy_on_device(d, m->cond, cond, (size_t)rows * sizeof(int32_t)));
  DRL_TRY(drl_time_embed(d, m->temb, t, m->freq, rows, c->time_features / 2));
  DRL_TRY(drl_embedding_forward(d, m->cemb, m->cond, W(m, T_COND_EMB), rows, c->cond_dim, c->n_cond));
  /* The first layer's input is [x, temb, cemb]: three GEMMs into one output instead of a concatenation. */
  float *pre = m->pre, *act = m->act;
  DRL_TRY(drl_matmul_forward(d, pre, m->x, W(m, T_W_X), rows, D, H, 0));
  DRL_TRY(drl_matmul_forward(d, pre, m->temb, W(m, T_W_T), rows, c->time_features, H, 1));
  DRL_TRY(drl_matmul_forward(d, pre, m->cemb, W(m, T_W_C), rows, c->cond_dim, H, 1));
  DRL_TRY(drl_bias_add(d, pre, W(m, T_B0), rows, H));
  DRL_TRY(drl_silu_forward(d, act, pre, (int64_t)RH));
  for (int l = 1; l < c->layers; ++l) {
    float *prev = m->act + (size_t)(l - 1) * m->rows_max * H;
    pre = m->pre + (size_t)l * m->rows_max * H;
    act = m->act + (size_t)l * m->rows_max * H;
    DRL_TRY(drl_matmul_forward(d, pre, prev, W(m, w_index(l)), rows, H, H, 0));
    DRL_TRY(drl_bias_add(d, pre, W(m, w_index(l) + 1), rows, H));
    DRL_TRY(drl_silu_forward(d, act, pre, (int64_t)RH));
  }
  int o = out_index(c);
  DRL_TRY(drl_matmul_forward(d, v, act, W(m, o), rows, H, D, 0));
  return drl_bias_add(d, v, W(m, o + 1), rows, D);
}

drl_status drl_flow_backward(drl_flow *m, const float *dv) {
  DRL_RANGE("flow_backward");
  if (m->rows == 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "flow: backward without a forward");
  const drl_flow_config *c = &m->cfg;
  const drl_device *d = &m->dev;
  int rows = m->rows, H = c->hidden, D = c->dim, o = out_index(c);
  size_t RH = (size_t)rows * H, stride = (size_t)m->rows_max * H;
  DRL_TRY(drl_bias_backward(d, G(m, o + 1), dv, rows, D));
  DRL_TRY(drl_memset(d, m->dact, 0, RH * sizeof(float)));
  DRL_TRY(drl_matmul_backward(d, m->dact, G(m, o), dv, m->act + (size_t)(c->layers - 1) * stride, W(m, o), rows, H,
                              D));
  for (int l = c->layers - 1; l >= 1; --l) {
    DRL_TRY(drl_silu_backward(d, m->dpre, m->dact, m->pre + (size_t)l * stride, (int64_t)RH));
    DRL_TRY(drl_bias_backward(d, G(m, w_index(l) + 1), m->dpre, rows, H));
    DRL_TRY(drl_memset(d, m->dact, 0, RH * sizeof(float)));
    DRL_TRY(drl_matmul_backward(d, m->dact, G(m, w_index(l)), m->dpre, m->act + (size_t)(l - 1) * stride,
                                W(m, w_index(l)), rows, H, H));
  }
  DRL_TRY(drl_silu_backward(d, m->dpre, m->dact, m->pre, (int64_t)RH));
  DRL_TRY(drl_bias_backward(d, G(m, T_B0), m->dpre, rows, H));
  DRL_TRY(drl_matmul_backward(d, NULL, G(m, T_W_X), m->dpre, m->x, W(m, T_W_X), rows, D, H));
  DRL_TRY(drl_matmul_backward(d, NULL, G(m, T_W_T), m->dpre, m->temb, W(m, T_W_T), rows, c->time_features, H));
  DRL_TRY(drl_memset(d, m->dcemb, 0, (size_t)rows * c->cond_dim * sizeof(float)));
  DRL_TRY(drl_matmul_backward(d, m->dcemb, G(m, T_W_C), m->dpre, m->cemb, W(m, T_W_C), rows, c->cond_dim, H));
  return drl_embedding_backward(d, G(m, T_COND_EMB), m->dcemb, m->cond, rows, c->cond_dim, c->n_cond,
                                m->emb_scratch);
}
