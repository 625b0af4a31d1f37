#include "kv_cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention_decode.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/kv_append.h"
#include "kernels/nvtx.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "transformer_internal.h"


/* Lays out the device buffers over d (sizes only when d->base is NULL). */
static void carve_device(drl_kv_cache *c, const drl_transformer_config *cf, drl_carve *d) {
  size_t f = sizeof(float), B = (size_t)c->B_max, C = (size_t)cf->d_model, F = (size_t)cf->d_ff;
  size_t HD = (size_t)c->q_dim, qkn = cf->qk_norm ? 1 : 0;
  size_t L = (size_t)c->n_layers, kvd = (size_t)c->kv_dim;
  size_t prefix = L * (size_t)c->n_groups * (size_t)c->P_cap * kvd, suffix = L * B * (size_t)c->S_cap * kvd;
  c->kp = (float *)drl_carve_take(d, prefix * f);
  c->vp = (float *)drl_carve_take(d, prefix * f);
  c->ks = (float *)drl_carve_take(d, suffix * f);
  c->vs = (float *)drl_carve_take(d, suffix * f);
  c->row_start = (int32_t *)drl_carve_take(d, (size_t)c->n_groups * sizeof(int32_t));
  c->x = (float *)drl_carve_take(d, B * C * f);
  c->x_mid = (float *)drl_carve_take(d, B * C * f);
  c->xn = (float *)drl_carve_take(d, B * C * f);
  c->rstd = (float *)drl_carve_take(d, B * f);
  c->q = (float *)drl_carve_take(d, B * HD * f);
  c->kn = (float *)drl_carve_take(d, B * (size_t)c->kv_dim * f);
  c->vn = (float *)drl_carve_take(d, B * (size_t)c->kv_dim * f);
  c->q_pre = qkn ? (float *)drl_carve_take(d, B * HD * f) : NULL;
  c->k_pre = qkn ? (float *)drl_carve_take(d, B * (size_t)c->kv_dim * f) : NULL;
  c->q_rstd = qkn ? (float *)drl_carve_take(d, B * (size_t)cf->n_heads * f) : NULL;
  c->k_rstd = qkn ? (float *)drl_carve_take(d, B * (size_t)cf->n_kv_heads * f) : NULL;
  c->att_out = (float *)drl_carve_take(d, B * HD * f);
  c->gate = (float *)drl_carve_take(d, B * F * f);
  c->up = (float *)drl_carve_take(d, B * F * f);
  c->h = (float *)drl_carve_take(d, B * F * f);
  c->logits = (float *)drl_carve_take(d, B * (size_t)c->V * f);
  c->scratch = (float *)drl_carve_take(d, (size_t)drl_attention_decode_scratch_floats(c->B_max, cf->n_heads, c->P_cap + c->S_cap) * f);
  c->idx = (int32_t *)drl_carve_take(d, (size_t)c->idx_cap * sizeof(int32_t));
  if (cf->moe.experts > 0) {
    size_t bytes = drl_moe_work_carve(&c->dev, &cf->moe, cf->d_model, c->B_max, NULL, &c->moe);
    drl_moe_work_carve(&c->dev, &cf->moe, cf->d_model, c->B_max, drl_carve_take(d, bytes), &c->moe);
  }
}

static void carve_host(drl_kv_cache *c, drl_carve *h) {
  size_t B = (size_t)c->B_max;
  c->row_start_host = (int32_t *)drl_carve_take(h, (size_t)c->n_groups * sizeof(int32_t));
  c->grp = (int32_t *)drl_carve_take(h, B * sizeof(int32_t));
  c->len = (int32_t *)drl_carve_take(h, B * sizeof(int32_t));
  c->t_of = (int *)drl_carve_take(h, B * sizeof(int));
  c->seen = (uint8_t *)drl_carve_take(h, B);
  c->idx_host = (int32_t *)drl_carve_take(h, (size_t)c->idx_cap * sizeof(int32_t));
}

/* The shape fields of c for cf on dev. */
static void set_shape(drl_kv_cache *c, const drl_transformer_config *cf, const drl_device *dev, int B_max,
                      int n_groups, int P_cap, int S_cap) {
  c->dev = *dev;
  c->n_layers = cf->n_layers;
  c->B_max = B_max;
  c->n_groups = n_groups;
  c->P_cap = P_cap;
  c->S_cap = S_cap;
  c->kv_dim = cf->n_kv_heads * drl_transformer_head_dim(cf);
  c->q_dim = cf->n_heads * drl_transformer_head_dim(cf);
  c->V = drl_transformer_vocab_used(cf);
  c->qk_norm = cf->qk_norm != 0;
  c->kv_bytes = drl_kv_cache_kv_bytes(cf, B_max, n_groups, P_cap, S_cap);
  /* prefill needs 3 entries per stored prompt position, decode 6 per row */
  int64_t prefill = 3 * (int64_t)n_groups * P_cap, decode = 6 * (int64_t)B_max;
  c->idx_cap = prefill > decode ? prefill : decode;
}

int64_t drl_kv_cache_kv_bytes(const drl_transformer_config *cf, int B_max, int n_groups, int P_cap, int S_cap) {
  int64_t kv_dim = (int64_t)cf->n_kv_heads * drl_transformer_head_dim(cf);
  return 2 * (int64_t)cf->n_layers * ((int64_t)n_groups * P_cap + (int64_t)B_max * S_cap) * kv_dim *
         (int64_t)sizeof(float);
}

int64_t drl_kv_cache_device_bytes(const drl_transformer_config *cf, const drl_device *dev, int B_max, int n_groups,
                                  int P_cap, int S_cap) {
  drl_kv_cache c;
  memset(&c, 0, sizeof c);
  set_shape(&c, cf, dev, B_max, n_groups, P_cap, S_cap);
  drl_carve sizing = {NULL, 0};
  carve_device(&c, cf, &sizing);
  return (int64_t)sizing.used;
}

drl_status drl_kv_cache_create(drl_kv_cache *c, const drl_transformer *m, int B_max, int n_groups, int P_cap,
                               int S_cap) {
  memset(c, 0, sizeof *c);
  const drl_transformer_config *cf = &m->cfg;
  if (B_max < 1 || n_groups < 1 || P_cap < 1 || S_cap < 1 || (int64_t)P_cap + S_cap > cf->max_seq)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "kv_cache: %d prompts x %d positions, %d slots x %d positions: each at least 1, and prompt plus "
                    "slot positions at most max_seq %d",
                    n_groups, P_cap, B_max, S_cap, cf->max_seq);
  set_shape(c, cf, &m->dev, B_max, n_groups, P_cap, S_cap);
  drl_carve sizing = {NULL, 0};
  carve_device(c, cf, &sizing);
  c->device_bytes = (int64_t)sizing.used;
  drl_status st = drl_alloc(&c->dev, &c->block, sizing.used, "KV cache");
  if (st != DRL_OK) {
    memset(c, 0, sizeof *c);
    return st;
  }
  drl_carve real = {(char *)c->block, 0};
  carve_device(c, cf, &real);
  drl_carve hsize = {NULL, 0};
  carve_host(c, &hsize);
  st = drl_host_alloc(&c->host_block, hsize.used, "KV cache host indices");
  if (st != DRL_OK) {
    drl_kv_cache_free(c);
    return st;
  }
  drl_carve hreal = {(char *)c->host_block, 0};
  carve_host(c, &hreal);
  return DRL_OK;
}

void drl_kv_cache_free(drl_kv_cache *c) {
  if (!c) return;
  drl_free(&c->dev, c->block);
  free(c->host_block);
  memset(c, 0, sizeof *c);
}

static int64_t prefix_floats(const drl_kv_cache *c) { return (int64_t)c->n_groups * c->P_cap * c->kv_dim; }
static int64_t suffix_floats(const drl_kv_cache *c) { return (int64_t)c->B_max * c->S_cap * c->kv_dim; }

static drl_status check_model(const drl_kv_cache *c, const drl_transformer *m) {
  if (!c->block) return DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_cache: used before drl_kv_cache_create");
  const drl_transformer_config *cf = &m->cfg;
  int D = drl_transformer_head_dim(cf);
  if (cf->n_layers != c->n_layers || cf->n_kv_heads * D != c->kv_dim || cf->n_heads * D != c->q_dim ||
      drl_transformer_vocab_used(cf) != c->V || (cf->qk_norm != 0) != c->qk_norm || m->dev.backend != c->dev.backend)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_cache: created for another model shape or device");
  return DRL_OK;
}

drl_status drl_kv_cache_prefill(drl_kv_cache *c, drl_transformer *m, const int32_t *tokens, const int32_t *row_start,
                                int B, int P, int G, int share, float temperature, float *logits) {
  DRL_RANGE("prefill");
  DRL_TRY(check_model(c, m));
  int64_t groups = share ? (int64_t)B : (int64_t)B * G;
  if (B < 1 || P < 1 || G < 1 || (int64_t)B * G > c->B_max || groups > c->n_groups || P > c->P_cap || P > m->T_max)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "kv_prefill: %d prompts x %d copies of %d tokens (%s) exceed the cache's %d slots, %d prompts x %d "
                    "positions or the model's T_max %d",
                    B, G, P, share ? "shared" : "one copy each", c->B_max, c->n_groups, c->P_cap, m->T_max);
  if (!(temperature > 0.0f) || !isfinite(temperature))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_prefill: temperature %g must be positive and finite",
                    (double)temperature);
  if (!tokens || !logits) return DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_prefill: NULL tokens or logits");
  for (int b = 0; row_start && b < B; ++b)
    if (row_start[b] < 0 || row_start[b] >= P)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_prefill: row_start[%d] = %d leaves no real token in [0, %d)", b,
                      row_start[b], P);
  const drl_device *d = &c->dev;
  const int V = c->V, kvd = c->kv_dim, copies = share ? 1 : G;
  for (int b0 = 0; b0 < B; b0 += m->B_max) {
    int nb = B - b0 < m->B_max ? B - b0 : m->B_max, R = nb * P;
    DRL_TRY(drl_transformer_forward(m, tokens + (size_t)b0 * P, NULL, row_start ? row_start + b0 : NULL, nb, P,
                                    temperature, NULL, NULL));
    for (int i = 0; i < nb; ++i) c->t_of[i] = P - 1;
    DRL_TRY(drl_transformer_logits_at(m, c->t_of, temperature, logits + (size_t)b0 * V));
    /* Entry (i, copy, t): source row i*P + t of the forward's k and v -> group (b0 + i)*copies + copy, position t. */
    int N = R * copies;
    int32_t *src = c->idx_host, *grp = src + N, *pos = grp + N;
    for (int i = 0, e = 0; i < nb; ++i)
      for (int k = 0; k < copies; ++k)
        for (int t = 0; t < P; ++t, ++e) {
          src[e] = i * P + t;
          grp[e] = (b0 + i) * copies + k;
          pos[e] = t;
        }
    DRL_TRY(drl_copy_to_device(d, c->idx, c->idx_host, (size_t)3 * N * sizeof(int32_t)));
    for (int l = 0; l < c->n_layers; ++l) {
      size_t off = (size_t)l * R * kvd;
      DRL_TRY(drl_kv_append(d, c->kp + l * prefix_floats(c), c->vp + l * prefix_floats(c), m->acts.k + off,
                            m->acts.v + off, c->idx, c->idx + N, c->idx + 2 * N, N, R, c->n_groups, c->P_cap, kvd));
    }
    DRL_TRY(drl_device_sync(d)); /* idx_host is rebuilt for the next chunk */
  }
  c->P = P;
  memset(c->len, 0, (size_t)c->B_max * sizeof(int32_t));
  memset(c->row_start_host, 0, (size_t)c->n_groups * sizeof(int32_t));
  for (int b = 0; b < B; ++b)
    for (int g = 0; g < G; ++g) {
      int s = b * G + g;
      c->grp[s] = share ? b : s;
      c->row_start_host[c->grp[s]] = row_start ? row_start[b] : 0;
      c->len[s] = P;
    }
  DRL_TRY(drl_copy_to_device(d, c->row_start, c->row_start_host, (size_t)c->n_groups * sizeof(int32_t)));
  return drl_device_sync(d);
}

/* Validates a decode batch and stages its index arrays [6][N] in idx_host. */
static drl_status stage_decode(drl_kv_cache *c, const drl_transformer *m, const int32_t *tokens, const int32_t *slots,
                               int N) {
  int32_t *tok = c->idx_host, *slot = tok + N, *grp = slot + N, *rope_pos = grp + N, *col = rope_pos + N;
  int32_t *spos = col + N;
  drl_status st = DRL_OK;
  int i = 0;
  for (; i < N; ++i) {
    int s = slots ? slots[i] : i;
    if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab) {
      st = DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_decode: token %d of row %d is outside the vocabulary [0, %d)",
                    tokens[i], i, m->cfg.vocab);
      break;
    }
    if (s < 0 || s >= c->B_max || c->seen[s]) {
      st = DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_decode: slot %d of row %d is outside [0, %d) or repeated", s, i,
                    c->B_max);
      break;
    }
    if (c->len[s] < 1 || c->len[s] >= c->P + c->S_cap) {
      st = DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_decode: slot %d holds %d positions (needs a prefill and room below %d)",
                    s, c->len[s], c->P + c->S_cap);
      break;
    }
    c->seen[s] = 1;
    tok[i] = tokens[i];
    slot[i] = s;
    grp[i] = c->grp[s];
    col[i] = c->len[s];
    spos[i] = c->len[s] - c->P;
    rope_pos[i] = c->len[s] - c->row_start_host[c->grp[s]];
  }
  for (int j = 0; j < i; ++j) c->seen[slot[j]] = 0;
  return st;
}

drl_status drl_kv_cache_decode(drl_kv_cache *c, const drl_transformer *m, const int32_t *tokens, const int32_t *slots,
                               int N, float temperature, float *logits) {
  DRL_RANGE("decode");
  DRL_TRY(check_model(c, m));
  if (N < 1 || N > c->B_max)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_decode: %d rows outside 1..%d", N, c->B_max);
  if (!(temperature > 0.0f) || !isfinite(temperature))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_decode: temperature %g must be positive and finite",
                    (double)temperature);
  if (!tokens || !logits) return DRL_FAIL(DRL_ERR_INVALID_ARG, "kv_decode: NULL tokens or logits");
  DRL_TRY(stage_decode(c, m, tokens, slots, N));
  const drl_device *d = &c->dev;
  const drl_transformer_config *cf = &m->cfg;
  const int C = cf->d_model, H = cf->n_heads, KV = cf->n_kv_heads, D = drl_transformer_head_dim(cf), HD = c->q_dim;
  const int kvd = c->kv_dim, V = c->V;
  DRL_TRY(drl_copy_to_device(d, c->idx, c->idx_host, (size_t)6 * N * sizeof(int32_t)));
  const int32_t *tok = c->idx, *slot = tok + N, *grp = slot + N, *rope_pos = grp + N, *col = rope_pos + N;
  const int32_t *spos = col + N;
  /* The block of drl_transformer_forward, one row per sequence; attention reads the cache instead of the block. */
  DRL_TRY(drl_embedding_forward(d, c->x, tok, drl_transformer_tok_emb(m), N, C, cf->vocab));
  for (int l = 0; l < cf->n_layers; ++l) {
    float *ks = c->ks + l * suffix_floats(c), *vs = c->vs + l * suffix_floats(c);
    const drl_decode_kv view = {c->kp + l * prefix_floats(c), c->vp + l * prefix_floats(c), ks, vs, c->row_start,
                                c->n_groups, c->P_cap, c->B_max, c->S_cap, c->P};
#define W(t) drl_transformer_layer_param(m, l, t)
    DRL_TRY(drl_rmsnorm_forward(d, c->xn, c->rstd, c->x, W(DRL_T_ATTN_NORM), N, C, cf->norm_eps));
    DRL_TRY(drl_transformer_qkv_forward(m, l, c->xn, rope_pos, N, c->q, c->kn, c->vn, c->q_pre, c->k_pre, c->q_rstd,
                                        c->k_rstd));
    DRL_TRY(drl_kv_append(d, ks, vs, c->kn, c->vn, NULL, slot, spos, N, N, c->B_max, c->S_cap, kvd));
    DRL_TRY(drl_attention_decode(d, c->att_out, c->q, &view, grp, slot, col, N, H, KV, D, c->scratch));
    DRL_TRY(drl_copy_on_device(d, c->x_mid, c->x, (size_t)N * C * sizeof(float)));
    DRL_TRY(drl_matmul_forward(d, c->x_mid, c->att_out, W(DRL_T_WO), N, HD, C, 1));
    DRL_TRY(drl_rmsnorm_forward(d, c->xn, c->rstd, c->x_mid, W(DRL_T_FFN_NORM), N, C, cf->norm_eps));
    DRL_TRY(drl_copy_on_device(d, c->x, c->x_mid, (size_t)N * C * sizeof(float)));
    DRL_TRY(drl_transformer_ffn_forward(m, l, c->xn, c->x, N, c->gate, c->up, c->h, &c->moe));
#undef W
  }
  DRL_TRY(drl_rmsnorm_forward(d, c->xn, c->rstd, c->x, drl_transformer_final_norm(m), N, C, cf->norm_eps));
  /* The LM head's logits GEMM (lm_head.c): the same call, alpha = 1/temperature, over the head's first vocab_used
   * rows (the others pad the vocabulary and are never scored). */
  DRL_TRY(drl_gemm(d, 0, 1, N, V, C, 1.0f / temperature, c->xn, C, drl_transformer_lm_head(m), C, 0.0f, c->logits, V));
  DRL_TRY(drl_copy_to_host(d, logits, c->logits, (size_t)N * V * sizeof(float)));
  for (int i = 0; i < N; ++i) c->len[slots ? slots[i] : i] += 1;
  return DRL_OK;
}
