#include "transformer.h"
#include "transformer_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/bias.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/lm_head.h"
#include "kernels/moe.h"
#include "kernels/nvtx.h"
#include "kernels/philox.h"
#include "kernels/reduce.h"
#include "kernels/rmsnorm.h"
#include "kernels/rng_fill.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "models/moe.h"

/* Per-layer tensors, in layout order; the index into a layer's block of the offset table. */
enum { P_ATTN_NORM, P_WQ, P_WK, P_WV, P_WO, P_FFN_NORM, P_W_GATE, P_W_UP, P_W_DOWN, P_PER_LAYER };
static const char *const layer_tensor_names[P_PER_LAYER] = {"attn_norm", "wq",     "wk",   "wv",    "wo",
                                                            "ffn_norm",  "w_gate", "w_up", "w_down"};

/* A block's optional attention tensors, after its FFN's, in this order (those the config enables). */
enum { X_BQ, X_BK, X_BV, X_Q_NORM, X_K_NORM, X_COUNT };
static const char *const extra_names[X_COUNT] = {"bq", "bk", "bv", "q_norm", "k_norm"};

int drl_transformer_head_dim(const drl_transformer_config *c) {
  return c->head_dim > 0 ? c->head_dim : c->d_model / c->n_heads;
}

int drl_transformer_vocab_used(const drl_transformer_config *c) { return c->vocab_used > 0 ? c->vocab_used : c->vocab; }

static drl_status check_rope_scaling(const drl_rope_scaling *r) {
  switch (r->type) {
    case DRL_ROPE_SCALING_NONE:
      return DRL_OK;
    case DRL_ROPE_SCALING_LINEAR:
      if (!(r->factor > 0.0f) || !isfinite(r->factor))
        return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: linear RoPE scaling needs a factor > 0 (got %g)",
                        (double)r->factor);
      return DRL_OK;
    case DRL_ROPE_SCALING_LLAMA3:
      if (!(r->factor > 0.0f) || !isfinite(r->factor) || !(r->low_freq_factor > 0.0f) ||
          !(r->high_freq_factor > r->low_freq_factor) || !isfinite(r->high_freq_factor) || r->original_max_pos < 1)
        return DRL_FAIL(DRL_ERR_INVALID_ARG,
                        "transformer: llama3 RoPE scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor "
                        "and original_max_pos >= 1 (got %g, %g, %g, %d)",
                        (double)r->factor, (double)r->low_freq_factor, (double)r->high_freq_factor,
                        r->original_max_pos);
      return DRL_OK;
    default:
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: unknown RoPE scaling type %d", r->type);
  }
}

drl_status drl_transformer_config_check(const drl_transformer_config *c) {
  if (c->vocab < 1 || c->d_model < 1 || c->n_layers < 1 || c->n_heads < 1 || c->n_kv_heads < 1 || c->d_ff < 1 ||
      c->max_seq < 1)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "transformer: every size must be positive (vocab %d, d_model %d, n_layers %d, n_heads %d, "
                    "n_kv_heads %d, d_ff %d, max_seq %d)",
                    c->vocab, c->d_model, c->n_layers, c->n_heads, c->n_kv_heads, c->d_ff, c->max_seq);
  if (c->head_dim < 0 || (c->head_dim > 0 && c->head_dim % 2 != 0))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: head_dim %d must be even and > 0 (0: d_model / n_heads)",
                    c->head_dim);
  if (c->head_dim == 0 && (c->d_model % c->n_heads != 0 || (c->d_model / c->n_heads) % 2 != 0))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: n_heads %d must divide d_model %d into an even head size",
                    c->n_heads, c->d_model);
  if (c->vocab_used < 0 || c->vocab_used > c->vocab)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: vocab_used %d outside [0, vocab %d] (0: all)", c->vocab_used,
                    c->vocab);
  DRL_TRY(check_rope_scaling(&c->rope_scaling));
  if (c->n_heads % c->n_kv_heads != 0)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: n_kv_heads %d must divide n_heads %d", c->n_kv_heads,
                    c->n_heads);
  if (!(c->norm_eps > 0.0f) || !(c->rope_theta > 0.0f) || !(c->init_std >= 0.0f))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: norm_eps and rope_theta must be > 0, init_std >= 0");
  if (c->moe.experts > 0) DRL_TRY(drl_moe_config_check(&c->moe, c->d_model));
  return DRL_OK;
}

/* Per-block tensors of an MoE block after the shared first six (attn_norm .. ffn_norm). */
enum { M_ROUTER = P_W_GATE, M_GATE, M_UP, M_DOWN, M_SHARED_GATE, M_SHARED_UP, M_SHARED_DOWN };

static int is_moe_layer(const drl_transformer_config *c, int l) {
  return c->moe.experts > 0 && l >= c->moe.first_layer;
}

/* Tensors of block l up to its FFN's last: 9 dense; an MoE block 6 + router + 3 expert stacks (+ 3 shared). */
static int ffn_tensors(const drl_transformer_config *c, int l) {
  return is_moe_layer(c, l) ? M_DOWN + 1 + (c->moe.shared_d_ff > 0 ? 3 : 0) : P_PER_LAYER;
}

static int has_extra(const drl_transformer_config *c, int x) { return x <= X_BV ? c->qkv_bias != 0 : c->qk_norm != 0; }

/* Tensors of block l: its FFN's, then the optional attention tensors. */
static int layer_tensors(const drl_transformer_config *c, int l) {
  int n = ffn_tensors(c, l);
  for (int x = 0; x < X_COUNT; ++x) n += has_extra(c, x);
  return n;
}

/* Index within block l of optional tensor x (the config must have it). */
static int extra_index(const drl_transformer_config *c, int l, int x) {
  int i = ffn_tensors(c, l);
  for (int j = 0; j < x; ++j) i += has_extra(c, j);
  return i;
}

/* Index in the offset table of block l's first tensor (the token embedding is tensor 0). */
static int layer_base(const drl_transformer_config *c, int l) {
  int base = 1;
  for (int j = 0; j < l; ++j) base += layer_tensors(c, j);
  return base;
}

drl_status drl_transformer_layout(const drl_transformer_config *c, drl_layout *lay) {
  memset(lay, 0, sizeof *lay);
  DRL_TRY(drl_transformer_config_check(c));
  DRL_TRY(drl_layout_init(lay, layer_base(c, c->n_layers) + 2));
  int64_t C = c->d_model, F = c->d_ff, D = drl_transformer_head_dim(c);
  int64_t HD = (int64_t)c->n_heads * D, KVD = (int64_t)c->n_kv_heads * D;
  int64_t E = c->moe.experts, Fe = c->moe.d_expert, Fs = c->moe.shared_d_ff;
  drl_status st = drl_layout_add(lay, "tok_emb", c->vocab, C, 1);
  for (int l = 0; st == DRL_OK && l < c->n_layers; ++l) {
    const int64_t shapes[P_PER_LAYER][2] = {{C, 1}, {HD, C}, {KVD, C}, {KVD, C}, {C, HD},
                                            {C, 1}, {F, C},  {F, C},   {C, F}};
    const char *const moe_names[] = {"router", "experts.w_gate", "experts.w_up", "experts.w_down",
                                     "shared.w_gate", "shared.w_up", "shared.w_down"};
    const int64_t moe_shapes[][2] = {{E, C}, {E * Fe, C}, {E * Fe, C}, {E * C, Fe}, {Fs, C}, {Fs, C}, {C, Fs}};
    const int64_t extra_rows[X_COUNT] = {HD, KVD, KVD, D, D};
    for (int p = 0; st == DRL_OK && p < ffn_tensors(c, l); ++p) {
      int moe = is_moe_layer(c, l) && p >= M_ROUTER;
      char name[DRL_TENSOR_NAME_CAP];
      snprintf(name, sizeof name, "layers.%d.%s", l, moe ? moe_names[p - M_ROUTER] : layer_tensor_names[p]);
      const int64_t *sh = moe ? moe_shapes[p - M_ROUTER] : shapes[p];
      st = drl_layout_add(lay, name, sh[0], sh[1], sh[1] > 1);
    }
    /* Appended after the FFN's tensors, so a config without them keeps its layout (and its checkpoints). */
    for (int x = 0; st == DRL_OK && x < X_COUNT; ++x) {
      if (!has_extra(c, x)) continue;
      char name[DRL_TENSOR_NAME_CAP];
      snprintf(name, sizeof name, "layers.%d.%s", l, extra_names[x]);
      st = drl_layout_add(lay, name, extra_rows[x], 1, 0);
    }
  }
  if (st == DRL_OK) st = drl_layout_add(lay, "final_norm", C, 1, 0);
  if (st == DRL_OK && !c->tied_embeddings) st = drl_layout_add(lay, "lm_head", c->vocab, C, 1);
  if (st != DRL_OK) drl_layout_free(lay);
  return st;
}

/* ---- parameter access: tensor p of block l lives at table index layer_base(l) + p ---- */

static const drl_tensor_info *layer_tensor(const drl_transformer *m, int l, int p) {
  return &m->ps.layout.tensors[layer_base(&m->cfg, l) + p];
}
static float *P(const drl_transformer *m, int l, int p) { return m->ps.params + layer_tensor(m, l, p)->offset; }
static float *G(const drl_transformer *m, int l, int p) { return m->ps.grads + layer_tensor(m, l, p)->offset; }
/* Optional tensor x of block l in the parameters (XP) or the gradients (XG); NULL when the config lacks it. */
static float *XP(const drl_transformer *m, int l, int x) {
  return has_extra(&m->cfg, x) ? P(m, l, extra_index(&m->cfg, l, x)) : NULL;
}
static float *XG(const drl_transformer *m, int l, int x) {
  return has_extra(&m->cfg, x) ? G(m, l, extra_index(&m->cfg, l, x)) : NULL;
}
static const drl_tensor_info *final_norm_info(const drl_transformer *m) {
  return &m->ps.layout.tensors[layer_base(&m->cfg, m->cfg.n_layers)];
}
static int64_t lm_head_offset(const drl_transformer *m) {
  return m->cfg.tied_embeddings ? 0 : m->ps.layout.tensors[m->ps.layout.count - 1].offset;
}

/* Block l's MoE weights within buf (the parameters or the gradients). */
static drl_moe_weights moe_weights(const drl_transformer *m, int l, float *buf) {
  const drl_tensor_info *t = layer_tensor(m, l, 0);
  int shared = m->cfg.moe.shared_d_ff > 0;
  drl_moe_weights w = {buf + t[M_ROUTER].offset, buf + t[M_GATE].offset, buf + t[M_UP].offset,
                       buf + t[M_DOWN].offset,   shared ? buf + t[M_SHARED_GATE].offset : NULL,
                       shared ? buf + t[M_SHARED_UP].offset : NULL,
                       shared ? buf + t[M_SHARED_DOWN].offset : NULL};
  return w;
}

/* The internal accessors (transformer_internal.h) name the same per-layer order as P_*. */
_Static_assert((int)DRL_T_ATTN_NORM == P_ATTN_NORM && (int)DRL_T_WQ == P_WQ && (int)DRL_T_WK == P_WK &&
                   (int)DRL_T_WV == P_WV && (int)DRL_T_WO == P_WO && (int)DRL_T_FFN_NORM == P_FFN_NORM &&
                   (int)DRL_T_W_GATE == P_W_GATE && (int)DRL_T_W_UP == P_W_UP && (int)DRL_T_W_DOWN == P_W_DOWN &&
                   (int)DRL_T_PER_LAYER == P_PER_LAYER,
               "transformer_internal.h lists the block's tensors in layout order");
float *drl_transformer_layer_param(const drl_transformer *m, int layer, drl_transformer_tensor which) {
  return P(m, layer, (int)which);
}
float *drl_transformer_tok_emb(const drl_transformer *m) { return m->ps.params; }
float *drl_transformer_final_norm(const drl_transformer *m) { return m->ps.params + final_norm_info(m)->offset; }
float *drl_transformer_lm_head(const drl_transformer *m) { return m->ps.params + lm_head_offset(m); }

/* ---- one allocation for every activation buffer ---- */

/* Lays out acts over c (sizes only when c->base is NULL). */
static void carve_acts(const drl_transformer *m, drl_carve *c, drl_transformer_acts *a) {
  const drl_transformer_config *cf = &m->cfg;
  size_t L = (size_t)cf->n_layers, R = (size_t)m->B_max * (size_t)m->T_max, C = (size_t)cf->d_model;
  size_t F = (size_t)cf->d_ff, D = (size_t)drl_transformer_head_dim(cf), H = (size_t)cf->n_heads;
  size_t KV = (size_t)cf->n_kv_heads, HD = H * D, KVD = KV * D, qkn = cf->qk_norm ? 1 : 0;
  size_t TT = (size_t)m->B_max * (size_t)cf->n_heads * (size_t)m->T_max * (size_t)m->T_max;
  size_t wide = F > HD ? F : HD, f = sizeof(float);
  a->res = (float *)drl_carve_take(c, (L + 1) * R * C * f);
  a->res_mid = (float *)drl_carve_take(c, L * R * C * f);
  a->xn1 = (float *)drl_carve_take(c, L * R * C * f);
  a->xn2 = (float *)drl_carve_take(c, L * R * C * f);
  a->rstd1 = (float *)drl_carve_take(c, L * R * f);
  a->rstd2 = (float *)drl_carve_take(c, L * R * f);
  a->q = (float *)drl_carve_take(c, L * R * HD * f);
  a->k = (float *)drl_carve_take(c, L * R * KVD * f);
  a->v = (float *)drl_carve_take(c, L * R * KVD * f);
  a->q_pre = qkn ? (float *)drl_carve_take(c, L * R * HD * f) : NULL;
  a->k_pre = qkn ? (float *)drl_carve_take(c, L * R * KVD * f) : NULL;
  a->q_rstd = qkn ? (float *)drl_carve_take(c, L * R * H * f) : NULL;
  a->k_rstd = qkn ? (float *)drl_carve_take(c, L * R * KV * f) : NULL;
  a->att = (float *)drl_carve_take(c, L * TT * f);
  a->att_out = (float *)drl_carve_take(c, L * R * HD * f);
  a->gate = (float *)drl_carve_take(c, L * R * F * f);
  a->up = (float *)drl_carve_take(c, L * R * F * f);
  a->h = (float *)drl_carve_take(c, L * R * F * f);
  a->xf = (float *)drl_carve_take(c, R * C * f);
  a->rstdf = (float *)drl_carve_take(c, R * f);
  a->logprob = (float *)drl_carve_take(c, R * f);
  a->entropy = (float *)drl_carve_take(c, R * f);
  a->dres = (float *)drl_carve_take(c, R * C * f);
  a->dxn = (float *)drl_carve_take(c, R * C * f);
  a->dwide = (float *)drl_carve_take(c, R * wide * f);
  a->dgate = (float *)drl_carve_take(c, R * F * f);
  a->dup = (float *)drl_carve_take(c, R * F * f);
  a->dq = (float *)drl_carve_take(c, R * HD * f);
  a->dk = (float *)drl_carve_take(c, R * KVD * f);
  a->dv = (float *)drl_carve_take(c, R * KVD * f);
  a->dq_pre = qkn ? (float *)drl_carve_take(c, R * HD * f) : NULL;
  a->dk_pre = qkn ? (float *)drl_carve_take(c, R * KVD * f) : NULL;
  a->datt = (float *)drl_carve_take(c, R * f); /* dlogprob */
  a->scratch = (float *)drl_carve_take(c, (size_t)m->scratch_floats * f);
  a->emb_scratch = drl_carve_take(c, (size_t)drl_embedding_scratch_bytes(&m->dev, (int)R, (int)C));
  a->tokens = (int32_t *)drl_carve_take(c, R * sizeof(int32_t));
  a->targets = (int32_t *)drl_carve_take(c, R * sizeof(int32_t));
  a->pos = (int32_t *)drl_carve_take(c, R * sizeof(int32_t));
  a->row_start = (int32_t *)drl_carve_take(c, (size_t)m->B_max * sizeof(int32_t));
  if (cf->moe.experts > 0) {
    drl_moe_work probe;
    drl_moe_grad_work gprobe;
    size_t wb = drl_moe_work_carve(&m->dev, &cf->moe, (int)C, (int64_t)R, NULL, &probe);
    for (int l = 0; l < cf->n_layers; ++l)
      if (is_moe_layer(cf, l))
        drl_moe_work_carve(&m->dev, &cf->moe, (int)C, (int64_t)R, drl_carve_take(c, wb), &a->moe[l]);
    size_t gb = drl_moe_grad_work_carve(&cf->moe, (int)C, (int64_t)R, NULL, &gprobe);
    drl_moe_grad_work_carve(&cf->moe, (int)C, (int64_t)R, drl_carve_take(c, gb), &a->moe_grad);
    a->moe_mask = (uint8_t *)drl_carve_take(c, R);
  }
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* The RoPE tables of head size D, from Hugging Face's fp32 inverse frequencies (scaled or not), so a pretrained model
 * rotates with the numbers it was trained with, at every position. */
static drl_status rope_tables(const drl_transformer_config *c, float *cos_h, float *sin_h, int D) {
  const drl_rope_scaling *r = &c->rope_scaling;
  float *inv = (float *)malloc((size_t)(D / 2) * sizeof(float));
  if (!inv) return DRL_FAIL(DRL_ERR_OOM, "out of host memory for the RoPE frequencies");
  drl_rope_inv_freq(inv, D, c->rope_theta);
  if (r->type == DRL_ROPE_SCALING_LINEAR) drl_rope_scale_linear(inv, D / 2, r->factor);
  if (r->type == DRL_ROPE_SCALING_LLAMA3)
    drl_rope_scale_llama3(inv, D / 2, r->factor, r->low_freq_factor, r->high_freq_factor, r->original_max_pos);
  drl_rope_tables_from_inv(cos_h, sin_h, c->max_seq, D, inv);
  free(inv);
  return DRL_OK;
}

/* Host-side parameter initialisation, then one copy to the device. */
static drl_status init_params(drl_transformer *m, uint64_t seed) {
  int64_t n = m->ps.layout.total;
  if (seed == DRL_TRANSFORMER_NO_INIT) return drl_memset(&m->dev, m->ps.params, 0, (size_t)n * sizeof(float));
  /* On the CPU the parameters are host memory already: filled in place, without a second copy of their size. */
  int cpu = m->dev.backend == DRL_BACKEND_CPU;
  float *host = cpu ? m->ps.params : NULL;
  if (!cpu) DRL_TRY(drl_host_alloc((void **)&host, (size_t)n * sizeof(float), "initial parameters (host copy)"));
  drl_rng_stream s = {seed, 0, drl_rng_tag(DRL_RNG_INIT, DRL_UID_INIT_TRANSFORMER, 0)};
  drl_status st = drl_rng_fill_cpu(host, (uint64_t)n, s, 0, DRL_DIST_NORMAL);
  float resid_std = m->cfg.init_std / sqrtf(2.0f * (float)m->cfg.n_layers);
  for (int i = 0; st == DRL_OK && i < m->ps.layout.count; ++i) {
    const drl_tensor_info *t = &m->ps.layout.tensors[i];
    int64_t count = t->shape[0] * t->shape[1];
    int is_resid_out = strstr(t->name, ".wo") != NULL || strstr(t->name, ".w_down") != NULL;
    const char *last = strrchr(t->name, '.');
    int is_bias = last && (!strcmp(last, ".bq") || !strcmp(last, ".bk") || !strcmp(last, ".bv"));
    float std = t->shape[1] == 1 ? 0.0f : (is_resid_out ? resid_std : m->cfg.init_std);
    float vec = is_bias ? 0.0f : 1.0f; /* vectors: norm gains 1, biases 0 */
    for (int64_t j = 0; j < count; ++j) host[t->offset + j] = t->shape[1] == 1 ? vec : host[t->offset + j] * std;
  }
  if (st == DRL_OK && !cpu) st = drl_copy_to_device(&m->dev, m->ps.params, host, (size_t)n * sizeof(float));
  if (st == DRL_OK) st = drl_device_sync(&m->dev);
  if (!cpu) free(host);
  return st;
}

/* The kernels' shared scratch of m's config, B_max and T_max on m's device. */
static void size_scratch(drl_transformer *m) {
  const drl_transformer_config *c = &m->cfg;
  const drl_device *dev = &m->dev;
  int D = drl_transformer_head_dim(c), rows = m->B_max * m->T_max;
  m->lm_chunk_rows = rows < 256 ? rows : 256;
  m->scratch_floats = max64(drl_attention_scratch_floats(dev, m->B_max, m->T_max, c->n_heads, c->n_kv_heads, D),
                            max64(drl_rmsnorm_scratch_floats(dev, rows, c->d_model),
                                  drl_lm_head_scratch_floats(dev, m->lm_chunk_rows, c->vocab)));
  if (c->qk_norm) /* the per-head norms' backward: rows x heads rows of D (the k norm has fewer heads) */
    m->scratch_floats = max64(m->scratch_floats, drl_rmsnorm_scratch_floats(dev, rows * c->n_heads, D));
  m->scratch_floats = max64(m->scratch_floats, (int64_t)m->B_max * c->vocab); /* drl_transformer_logits_at */
}

drl_status drl_transformer_memory(const drl_transformer_config *cfg, const drl_device *dev, int B_max, int T_max,
                                  drl_model_memory *mem) {
  memset(mem, 0, sizeof *mem);
  drl_layout layout;
  DRL_TRY(drl_transformer_layout(cfg, &layout));
  int64_t n = layout.total;
  drl_layout_free(&layout);
  drl_transformer m;
  memset(&m, 0, sizeof m);
  m.cfg = *cfg;
  m.dev = *dev;
  m.B_max = B_max;
  m.T_max = T_max;
  size_scratch(&m);
  if (cfg->moe.experts > 0 && !(m.acts.moe = (drl_moe_work *)calloc((size_t)cfg->n_layers, sizeof(drl_moe_work))))
    return DRL_FAIL(DRL_ERR_OOM, "out of host memory");
  drl_carve sizing = {NULL, 0};
  carve_acts(&m, &sizing, &m.acts);
  free(m.acts.moe);
  mem->params = mem->grads = n * (int64_t)sizeof(float);
  mem->optimizer = 2 * n * (int64_t)sizeof(float);
  mem->activations = (int64_t)sizing.used;
  mem->rope = 2 * (int64_t)cfg->max_seq * (drl_transformer_head_dim(cfg) / 2) * (int64_t)sizeof(float);
  return DRL_OK;
}

drl_status drl_transformer_create(drl_transformer *m, const drl_transformer_config *cfg, const drl_device *dev,
                                  int B_max, int T_max, uint64_t seed) {
  memset(m, 0, sizeof *m);
  if (B_max < 1 || T_max < 1 || T_max > cfg->max_seq)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: batch %d x %d outside 1..max_seq %d", B_max, T_max,
                    cfg->max_seq);
  m->cfg = *cfg;
  m->dev = *dev;
  m->B_max = B_max;
  m->T_max = T_max;
  /* CUB sizes its sorts at run time: a size it refuses is an error here, never a scratch of 0 bytes. */
  int64_t rows_max = (int64_t)B_max * T_max;
  if (drl_embedding_scratch_bytes(dev, (int)rows_max, cfg->d_model) < 0)
    return DRL_FAIL(DRL_ERR_UNSUPPORTED, "transformer: the embedding backward's sort of %lld rows cannot be sized",
                    (long long)rows_max);
  if (cfg->moe.experts > 0 && drl_moe_dispatch_scratch_bytes(dev, rows_max, cfg->moe.top_k, cfg->moe.experts) < 0)
    return DRL_FAIL(DRL_ERR_UNSUPPORTED, "transformer: the MoE dispatch of %lld rows x top-%d of %d experts cannot be "
                    "sized", (long long)rows_max, cfg->moe.top_k, cfg->moe.experts);
  drl_layout layout;
  DRL_TRY(drl_transformer_layout(cfg, &layout));
  DRL_TRY(drl_params_create(&m->ps, dev, &layout, ""));
  const drl_transformer_config *c = &m->cfg;
  int D = drl_transformer_head_dim(c);
  size_scratch(m);
  drl_status st = DRL_OK;
  size_t table = (size_t)c->max_seq * (size_t)(D / 2) * sizeof(float);
  DRL_TRY_GOTO(drl_alloc(dev, (void **)&m->rope_cos, table, "RoPE cos table"));
  DRL_TRY_GOTO(drl_alloc(dev, (void **)&m->rope_sin, table, "RoPE sin table"));
  {
    float *cos_h = (float *)malloc(table), *sin_h = (float *)malloc(table);
    if (!cos_h || !sin_h) st = DRL_FAIL(DRL_ERR_OOM, "out of host memory for the RoPE tables");
    if (st == DRL_OK) st = rope_tables(c, cos_h, sin_h, D);
    if (st == DRL_OK) {
      st = drl_copy_to_device(dev, m->rope_cos, cos_h, table);
      if (st == DRL_OK) st = drl_copy_to_device(dev, m->rope_sin, sin_h, table);
      if (st == DRL_OK) st = drl_device_sync(dev);
    }
    free(cos_h);
    free(sin_h);
    if (st != DRL_OK) goto done;
  }
  if (c->moe.experts > 0) {
    size_t lb = (size_t)c->n_layers * (size_t)c->moe.experts * sizeof(float);
    m->acts.moe = (drl_moe_work *)calloc((size_t)c->n_layers, sizeof(drl_moe_work));
    if (!m->acts.moe) st = DRL_FAIL(DRL_ERR_OOM, "out of host memory for the MoE blocks");
    if (st == DRL_OK) st = drl_alloc(dev, (void **)&m->moe_bias, lb, "MoE balancing bias");
    if (st == DRL_OK) st = drl_alloc(dev, (void **)&m->moe_aux, lb, "MoE auxiliary-loss gradient");
    if (st != DRL_OK) goto done;
  }
  {
    drl_carve sizing = {NULL, 0};
    carve_acts(m, &sizing, &m->acts);
    m->act_bytes = (int64_t)sizing.used;
    DRL_TRY_GOTO(drl_alloc(dev, &m->act_block, sizing.used, "activations"));
    drl_carve real = {(char *)m->act_block, 0};
    carve_acts(m, &real, &m->acts);
  }
  DRL_TRY_GOTO(drl_host_alloc((void **)&m->batch_host, (size_t)2 * B_max * T_max * sizeof(int32_t),
                              "batch staging"));
  DRL_TRY_GOTO(init_params(m, seed));
done:
  if (st != DRL_OK) drl_transformer_free(m);
  return st;
}

void drl_transformer_free(drl_transformer *m) {
  if (!m) return;
  void *bufs[] = {m->rope_cos, m->rope_sin, m->act_block, m->moe_bias, m->moe_aux};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; ++i) drl_free(&m->dev, bufs[i]);
  free(m->acts.moe);
  free(m->batch_host);
  drl_params_free(&m->ps);
  memset(m, 0, sizeof *m);
}

/* Uploads the batch and derives the RoPE positions (counted from each row's first real token). */
static drl_status upload_batch(drl_transformer *m, const int32_t *tokens, const int32_t *targets,
                               const int32_t *row_start, int B, int T) {
  int R = B * T;
  int32_t *pos = m->batch_host, *tg = pos + R;
  for (int b = 0; b < B; ++b) {
    int start = row_start ? row_start[b] : 0;
    for (int t = 0; t < T; ++t) {
      pos[b * T + t] = t >= start ? t - start : 0;
      tg[b * T + t] = targets ? targets[b * T + t] : -1;
    }
  }
  drl_status st = DRL_OK;
  /* The GPU kernels cannot report a bad id: check every token and target here. */
  for (int i = 0; st == DRL_OK && i < R; ++i)
    if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab)
      st = DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: token %d at position %d is outside the vocabulary [0, %d)",
                    tokens[i], i, m->cfg.vocab);
  int Vu = drl_transformer_vocab_used(&m->cfg);
  for (int i = 0; st == DRL_OK && i < R; ++i)
    if (tg[i] >= Vu)
      st = DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "transformer: target %d at position %d is outside the scored vocabulary [0, %d)", tg[i], i, Vu);
  for (int b = 0; st == DRL_OK && row_start && b < B; ++b)
    if (row_start[b] < 0 || row_start[b] > T)
      st = DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: row_start[%d] = %d outside [0, %d]", b, row_start[b], T);
  const drl_device *d = &m->dev;
  if (st == DRL_OK) st = drl_copy_to_device(d, m->acts.tokens, tokens, (size_t)R * sizeof(int32_t));
  if (st == DRL_OK) st = drl_copy_to_device(d, m->acts.pos, pos, (size_t)R * sizeof(int32_t));
  if (st == DRL_OK) st = drl_copy_to_device(d, m->acts.targets, tg, (size_t)R * sizeof(int32_t));
  if (st == DRL_OK && row_start) st = drl_copy_to_device(d, m->acts.row_start, row_start, (size_t)B * sizeof(int32_t));
  if (st == DRL_OK) st = drl_device_sync(d); /* the staging is reused by the next batch */
  return st;
}

drl_status drl_transformer_forward(drl_transformer *m, const int32_t *tokens, const int32_t *targets,
                                   const int32_t *row_start, int B, int T, float temperature, float *logprob,
                                   float *entropy) {
  DRL_RANGE("forward");
  if (B < 1 || T < 1 || B > m->B_max || T > m->T_max)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: batch %d x %d exceeds the allocated %d x %d", B, T, m->B_max,
                    m->T_max);
  if (!(temperature > 0.0f)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: temperature must be > 0");
  DRL_TRY(upload_batch(m, tokens, targets, row_start, B, T));
  m->B = B;
  m->T = T;
  const drl_device *d = &m->dev;
  const drl_transformer_config *c = &m->cfg;
  drl_transformer_acts *a = &m->acts;
  int R = B * T, C = c->d_model, F = c->d_ff, H = c->n_heads, KV = c->n_kv_heads, D = drl_transformer_head_dim(c);
  int HD = H * D, KVD = KV * D;
  const int32_t *rs = row_start ? a->row_start : NULL;
  m->moe_has_aux = m->moe_has_mask = 0; /* an auxiliary loss is set for the forward it follows */
  DRL_TRY(drl_embedding_forward(d, a->res, a->tokens, m->ps.params, R, C, c->vocab));
  for (int l = 0; l < c->n_layers; ++l) {
    DRL_RANGE("block");
    size_t rc = (size_t)l * R * C;
    float *res = a->res + rc, *res_mid = a->res_mid + rc, *res_next = a->res + rc + (size_t)R * C;
    float *xn1 = a->xn1 + rc, *xn2 = a->xn2 + rc, *rstd1 = a->rstd1 + (size_t)l * R, *rstd2 = a->rstd2 + (size_t)l * R;
    float *q = a->q + (size_t)l * R * HD, *k = a->k + (size_t)l * R * KVD, *v = a->v + (size_t)l * R * KVD;
    float *att = a->att + (size_t)l * B * H * T * T, *att_out = a->att_out + (size_t)l * R * HD;
    float *gate = a->gate + (size_t)l * R * F, *up = a->up + (size_t)l * R * F, *h = a->h + (size_t)l * R * F;
    float *q_pre = NULL, *k_pre = NULL, *q_rstd = NULL, *k_rstd = NULL;
    if (c->qk_norm) {
      q_pre = a->q_pre + (size_t)l * R * HD;
      k_pre = a->k_pre + (size_t)l * R * KVD;
      q_rstd = a->q_rstd + (size_t)l * R * H;
      k_rstd = a->k_rstd + (size_t)l * R * KV;
    }
    DRL_TRY(drl_rmsnorm_forward(d, xn1, rstd1, res, P(m, l, P_ATTN_NORM), R, C, c->norm_eps));
    DRL_TRY(drl_transformer_qkv_forward(m, l, xn1, a->pos, R, q, k, v, q_pre, k_pre, q_rstd, k_rstd));
    DRL_TRY(drl_attention_forward(d, att_out, att, q, k, v, rs, B, T, H, KV, D, a->scratch));
    DRL_TRY(drl_copy_on_device(d, res_mid, res, (size_t)R * C * sizeof(float)));
    DRL_TRY(drl_matmul_forward(d, res_mid, att_out, P(m, l, P_WO), R, HD, C, 1));
    DRL_TRY(drl_rmsnorm_forward(d, xn2, rstd2, res_mid, P(m, l, P_FFN_NORM), R, C, c->norm_eps));
    DRL_TRY(drl_copy_on_device(d, res_next, res_mid, (size_t)R * C * sizeof(float)));
    DRL_TRY(drl_transformer_ffn_forward(m, l, xn2, res_next, R, gate, up, h, a->moe ? &a->moe[l] : NULL));
  }
  float *res_final = a->res + (size_t)c->n_layers * R * C;
  DRL_TRY(drl_rmsnorm_forward(d, a->xf, a->rstdf, res_final, m->ps.params + final_norm_info(m)->offset, R, C,
                              c->norm_eps));
  {
    DRL_RANGE("lm_head");
    /* The head's first vocab_used rows are a [vocab_used, C] matrix of their own: padded ids are never scored. */
    DRL_TRY(drl_lm_head_forward(d, a->logprob, a->entropy, a->xf, m->ps.params + lm_head_offset(m), a->targets, R, C,
                                drl_transformer_vocab_used(c), temperature, a->scratch, m->lm_chunk_rows));
  }
  m->temperature = temperature;
  m->has_row_start = row_start != NULL;
  if (logprob) DRL_TRY(drl_copy_to_host(d, logprob, a->logprob, (size_t)R * sizeof(float)));
  if (entropy) DRL_TRY(drl_copy_to_host(d, entropy, a->entropy, (size_t)R * sizeof(float)));
  return DRL_OK;
}

/* Tells the gradient hook that grads[from, total) are final (the layout runs tok_emb, blocks, final_norm, lm_head, and
 * the backward finishes them from the end; a tied LM head adds into tok_emb, which the embedding backward ends). */
static drl_status grads_ready(drl_transformer *m, int64_t from) {
  return m->grad_hook ? m->grad_hook(m->grad_hook_user, m->ps.grads, from) : DRL_OK;
}

drl_status drl_transformer_backward(drl_transformer *m, const float *dlogprob) {
  DRL_RANGE("backward");
  if (m->B == 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: backward without a forward");
  const drl_device *d = &m->dev;
  const drl_transformer_config *c = &m->cfg;
  drl_transformer_acts *a = &m->acts;
  int B = m->B, T = m->T, R = B * T, C = c->d_model, F = c->d_ff, H = c->n_heads, KV = c->n_kv_heads;
  int D = drl_transformer_head_dim(c), HD = H * D, KVD = KV * D;
  size_t fRC = (size_t)R * C * sizeof(float);
  const int32_t *rs = m->has_row_start ? a->row_start : NULL;
  float *dlp = a->datt;
  DRL_TRY(drl_copy_to_device(d, dlp, dlogprob, (size_t)R * sizeof(float)));
  {
    DRL_RANGE("lm_head");
    DRL_TRY(drl_lm_head_backward(d, a->dxn, m->ps.grads + lm_head_offset(m), dlp, a->xf,
                                 m->ps.params + lm_head_offset(m), a->targets, R, C, drl_transformer_vocab_used(c),
                                 m->temperature, a->scratch, m->lm_chunk_rows));
  }
  const drl_tensor_info *fn = final_norm_info(m);
  DRL_TRY(drl_memset(d, a->dres, 0, fRC));
  DRL_TRY(drl_rmsnorm_backward(d, a->dres, m->ps.grads + fn->offset, a->dxn, a->res + (size_t)c->n_layers * R * C,
                               m->ps.params + fn->offset, a->rstdf, R, C, a->scratch));
  DRL_TRY(grads_ready(m, fn->offset));
  for (int l = c->n_layers - 1; l >= 0; --l) {
    DRL_RANGE("block");
    size_t rc = (size_t)l * R * C;
    float *res = a->res + rc, *res_mid = a->res_mid + rc;
    float *xn1 = a->xn1 + rc, *xn2 = a->xn2 + rc, *rstd1 = a->rstd1 + (size_t)l * R, *rstd2 = a->rstd2 + (size_t)l * R;
    float *q = a->q + (size_t)l * R * HD, *k = a->k + (size_t)l * R * KVD, *v = a->v + (size_t)l * R * KVD;
    float *att = a->att + (size_t)l * B * H * T * T, *att_out = a->att_out + (size_t)l * R * HD;
    float *gate = a->gate + (size_t)l * R * F, *up = a->up + (size_t)l * R * F, *h = a->h + (size_t)l * R * F;
    /* FFN: res_next = res_mid + swiglu(xn2 Wg^T, xn2 Wu^T) Wd^T (or the MoE); dres holds d(res_next). */
    DRL_TRY(drl_memset(d, a->dxn, 0, fRC));
    if (is_moe_layer(c, l)) {
      drl_moe_weights w = moe_weights(m, l, m->ps.params), gw = moe_weights(m, l, m->ps.grads);
      DRL_TRY(drl_moe_backward(d, &c->moe, C, &w, &gw, xn2, a->dres, a->dxn, R, &a->moe[l], &a->moe_grad,
                               m->moe_has_aux ? m->moe_aux + (size_t)l * c->moe.experts : NULL,
                               m->moe_has_mask ? a->moe_mask : NULL));
    } else {
      float *dh = a->dwide;
      DRL_TRY(drl_memset(d, dh, 0, (size_t)R * F * sizeof(float)));
      DRL_TRY(drl_matmul_backward(d, dh, G(m, l, P_W_DOWN), a->dres, h, P(m, l, P_W_DOWN), R, F, C));
      DRL_TRY(drl_swiglu_backward(d, a->dgate, a->dup, dh, gate, up, (int64_t)R * F));
      DRL_TRY(drl_matmul_backward(d, a->dxn, G(m, l, P_W_GATE), a->dgate, xn2, P(m, l, P_W_GATE), R, C, F));
      DRL_TRY(drl_matmul_backward(d, a->dxn, G(m, l, P_W_UP), a->dup, xn2, P(m, l, P_W_UP), R, C, F));
    }
    DRL_TRY(drl_rmsnorm_backward(d, a->dres, G(m, l, P_FFN_NORM), a->dxn, res_mid, P(m, l, P_FFN_NORM), rstd2, R, C,
                                 a->scratch));
    /* Attention: res_mid = res + attention(rope(xn1 Wq^T), rope(xn1 Wk^T), xn1 Wv^T) Wo^T; dres holds d(res_mid). */
    float *datt_out = a->dwide;
    DRL_TRY(drl_memset(d, datt_out, 0, (size_t)R * HD * sizeof(float)));
    DRL_TRY(drl_matmul_backward(d, datt_out, G(m, l, P_WO), a->dres, att_out, P(m, l, P_WO), R, HD, C));
    DRL_TRY(drl_attention_backward(d, a->dq, a->dk, a->dv, datt_out, q, k, v, att, rs, B, T, H, KV, D, a->scratch));
    DRL_TRY(drl_rope_backward(d, a->dq, a->pos, m->rope_cos, m->rope_sin, R, H, D));
    DRL_TRY(drl_rope_backward(d, a->dk, a->pos, m->rope_cos, m->rope_sin, R, KV, D));
    /* dqp, dkp: the gradients of the projections (+ bias), before the per-head norms when there are any. */
    float *dqp = a->dq, *dkp = a->dk;
    if (c->qk_norm) {
      dqp = a->dq_pre;
      dkp = a->dk_pre;
      DRL_TRY(drl_memset(d, dqp, 0, (size_t)R * HD * sizeof(float)));
      DRL_TRY(drl_memset(d, dkp, 0, (size_t)R * KVD * sizeof(float)));
      DRL_TRY(drl_rmsnorm_backward(d, dqp, XG(m, l, X_Q_NORM), a->dq, a->q_pre + (size_t)l * R * HD,
                                   XP(m, l, X_Q_NORM), a->q_rstd + (size_t)l * R * H, R * H, D, a->scratch));
      DRL_TRY(drl_rmsnorm_backward(d, dkp, XG(m, l, X_K_NORM), a->dk, a->k_pre + (size_t)l * R * KVD,
                                   XP(m, l, X_K_NORM), a->k_rstd + (size_t)l * R * KV, R * KV, D, a->scratch));
    }
    if (c->qkv_bias) {
      DRL_TRY(drl_bias_backward(d, XG(m, l, X_BQ), dqp, R, HD));
      DRL_TRY(drl_bias_backward(d, XG(m, l, X_BK), dkp, R, KVD));
      DRL_TRY(drl_bias_backward(d, XG(m, l, X_BV), a->dv, R, KVD));
    }
    DRL_TRY(drl_memset(d, a->dxn, 0, fRC));
    DRL_TRY(drl_matmul_backward(d, a->dxn, G(m, l, P_WQ), dqp, xn1, P(m, l, P_WQ), R, C, HD));
    DRL_TRY(drl_matmul_backward(d, a->dxn, G(m, l, P_WK), dkp, xn1, P(m, l, P_WK), R, C, KVD));
    DRL_TRY(drl_matmul_backward(d, a->dxn, G(m, l, P_WV), a->dv, xn1, P(m, l, P_WV), R, C, KVD));
    DRL_TRY(drl_rmsnorm_backward(d, a->dres, G(m, l, P_ATTN_NORM), a->dxn, res, P(m, l, P_ATTN_NORM), rstd1, R, C,
                                 a->scratch));
    DRL_TRY(grads_ready(m, layer_tensor(m, l, 0)->offset));
  }
  DRL_TRY(drl_embedding_backward(d, m->ps.grads, a->dres, a->tokens, R, C, c->vocab, a->emb_scratch));
  return grads_ready(m, 0);
}

void drl_transformer_set_grad_hook(drl_transformer *m, drl_grad_ready_fn fn, void *user) {
  m->grad_hook = fn;
  m->grad_hook_user = fn ? user : NULL;
}

int drl_transformer_is_moe(const drl_transformer *m, int layer) { return is_moe_layer(&m->cfg, layer); }

drl_status drl_transformer_qkv_forward(const drl_transformer *m, int l, const float *xn, const int32_t *pos, int rows,
                                       float *q, float *k, float *v, float *q_pre, float *k_pre, float *q_rstd,
                                       float *k_rstd) {
  const drl_device *d = &m->dev;
  const drl_transformer_config *c = &m->cfg;
  int C = c->d_model, H = c->n_heads, KV = c->n_kv_heads, D = drl_transformer_head_dim(c), HD = H * D, KVD = KV * D;
  /* With the per-head norms the projections land in q_pre / k_pre (kept for the backward), the norms write q / k. */
  float *qp = c->qk_norm ? q_pre : q, *kp = c->qk_norm ? k_pre : k;
  DRL_TRY(drl_matmul_forward(d, qp, xn, P(m, l, P_WQ), rows, C, HD, 0));
  DRL_TRY(drl_matmul_forward(d, kp, xn, P(m, l, P_WK), rows, C, KVD, 0));
  DRL_TRY(drl_matmul_forward(d, v, xn, P(m, l, P_WV), rows, C, KVD, 0));
  if (c->qkv_bias) {
    DRL_TRY(drl_bias_add(d, qp, XP(m, l, X_BQ), rows, HD));
    DRL_TRY(drl_bias_add(d, kp, XP(m, l, X_BK), rows, KVD));
    DRL_TRY(drl_bias_add(d, v, XP(m, l, X_BV), rows, KVD));
  }
  if (c->qk_norm) { /* every (row, head) is one RMSNorm row of D; the gain is shared by the heads */
    DRL_TRY(drl_rmsnorm_forward(d, q, q_rstd, qp, XP(m, l, X_Q_NORM), rows * H, D, c->norm_eps));
    DRL_TRY(drl_rmsnorm_forward(d, k, k_rstd, kp, XP(m, l, X_K_NORM), rows * KV, D, c->norm_eps));
  }
  DRL_TRY(drl_rope_forward(d, q, pos, m->rope_cos, m->rope_sin, rows, H, D));
  return drl_rope_forward(d, k, pos, m->rope_cos, m->rope_sin, rows, KV, D);
}

drl_status drl_transformer_ffn_forward(const drl_transformer *m, int l, const float *xn, float *out, int rows,
                                       float *gate, float *up, float *h, drl_moe_work *work) {
  const drl_device *d = &m->dev;
  const drl_transformer_config *c = &m->cfg;
  int C = c->d_model, F = c->d_ff;
  if (is_moe_layer(c, l)) {
    drl_moe_weights w = moe_weights(m, l, m->ps.params);
    return drl_moe_forward(d, &c->moe, C, &w, m->moe_bias + (size_t)l * c->moe.experts, xn, out, rows, work);
  }
  DRL_TRY(drl_matmul_forward(d, gate, xn, P(m, l, P_W_GATE), rows, C, F, 0));
  DRL_TRY(drl_matmul_forward(d, up, xn, P(m, l, P_W_UP), rows, C, F, 0));
  DRL_TRY(drl_swiglu_forward(d, h, gate, up, (int64_t)rows * F));
  return drl_matmul_forward(d, out, h, P(m, l, P_W_DOWN), rows, F, C, 1);
}

drl_status drl_transformer_moe_routes(const drl_transformer *m, const uint8_t *real, double *counts,
                                      double *score_sums) {
  const drl_transformer_config *c = &m->cfg;
  if (c->moe.experts == 0) return DRL_OK;
  if (m->B == 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: MoE routes without a forward");
  int E = c->moe.experts, K = c->moe.top_k;
  int64_t R = (int64_t)m->B * m->T;
  int32_t *sel = (int32_t *)malloc((size_t)R * K * sizeof(int32_t));
  float *scores = score_sums ? (float *)malloc((size_t)R * E * sizeof(float)) : NULL;
  drl_status st = sel && (scores || !score_sums) ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for MoE routes");
  for (int l = 0; st == DRL_OK && l < c->n_layers; ++l) {
    if (!is_moe_layer(c, l)) continue;
    const drl_moe_work *w = &m->acts.moe[l];
    st = drl_copy_to_host(&m->dev, sel, w->sel, (size_t)R * K * sizeof(int32_t));
    if (st == DRL_OK && scores) st = drl_copy_to_host(&m->dev, scores, w->scores, (size_t)R * E * sizeof(float));
    for (int64_t n = 0; st == DRL_OK && n < R; ++n) {
      if (real && !real[n]) continue;
      for (int k = 0; k < K; ++k) counts[(size_t)l * E + sel[n * K + k]] += 1.0;
      if (!scores) continue;
      double sum = 0.0;
      for (int e = 0; e < E; ++e) sum += scores[n * E + e];
      for (int e = 0; e < E; ++e) score_sums[(size_t)l * E + e] += sum > 0 ? scores[n * E + e] / sum : 0.0;
    }
  }
  free(sel);
  free(scores);
  return st;
}

drl_status drl_transformer_moe_set_bias(drl_transformer *m, const float *bias) {
  const drl_transformer_config *c = &m->cfg;
  if (c->moe.experts == 0) return DRL_OK;
  DRL_TRY(drl_copy_to_device(&m->dev, m->moe_bias, bias, (size_t)c->n_layers * c->moe.experts * sizeof(float)));
  return drl_device_sync(&m->dev);
}

drl_status drl_transformer_moe_set_aux(drl_transformer *m, const float *aux, const uint8_t *real) {
  const drl_transformer_config *c = &m->cfg;
  m->moe_has_aux = m->moe_has_mask = 0;
  if (c->moe.experts == 0 || !aux) return DRL_OK;
  if (m->B == 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: an auxiliary loss without a forward");
  DRL_TRY(drl_copy_to_device(&m->dev, m->moe_aux, aux, (size_t)c->n_layers * c->moe.experts * sizeof(float)));
  if (real) DRL_TRY(drl_copy_to_device(&m->dev, m->acts.moe_mask, real, (size_t)m->B * m->T));
  DRL_TRY(drl_device_sync(&m->dev)); /* the host arrays may go */
  m->moe_has_aux = 1;
  m->moe_has_mask = real != NULL;
  return DRL_OK;
}

drl_status drl_transformer_logits_at(drl_transformer *m, const int *t_of, float temperature, float *logits) {
  if (m->B == 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: logits without a forward");
  const drl_device *d = &m->dev;
  int B = m->B, T = m->T, C = m->cfg.d_model, V = drl_transformer_vocab_used(&m->cfg);
  /* Gather the B rows into dxn, then one GEMM into the kernel scratch. */
  for (int b = 0; b < B; ++b) {
    if (t_of[b] < 0 || t_of[b] >= T)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "transformer: position %d of row %d outside [0, %d)", t_of[b], b, T);
    DRL_TRY(drl_copy_on_device(d, m->acts.dxn + (size_t)b * C, m->acts.xf + ((size_t)b * T + t_of[b]) * C,
                               (size_t)C * sizeof(float)));
  }
  float *out = m->acts.scratch; /* sized for B_max x V at create */
  DRL_TRY(drl_gemm(d, 0, 1, B, V, C, 1.0f / temperature, m->acts.dxn, C, m->ps.params + lm_head_offset(m), C, 0.0f, out,
                   V));
  return drl_copy_to_host(d, logits, out, (size_t)B * V * sizeof(float));
}
