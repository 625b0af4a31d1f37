/* Incremental decoding of the transformer policy with a KV cache.
 *
 * The cache holds the keys (after RoPE) and values of every layer for B_max sequences ("slots") x T_max positions on
 * the model's device, with a decode workspace for B_max rows; all of it is one allocation made at creation.
 * Positions are the absolute columns of drl_transformer_forward's left-padded layout: slot s has row_start[s] (its
 * first real token; RoPE positions count from there) and len[s] (positions filled). A decoded token of slot s goes
 * to position len[s] and attends to [row_start[s], len[s]]: the keys the full-sequence forward shows that position.
 * Every op is the training forward's (same kernels, same row math; decode attention forms each key's terms as the
 * forward does), so the logits agree with drl_transformer_forward + drl_transformer_logits_at up to the GEMM
 * library's dependence on the number of rows per call (OpenBLAS edge kernels, cuBLAS algorithm choice). */
#ifndef DRL_KV_CACHE_H
#define DRL_KV_CACHE_H

#include <stdint.h>

#include "kernels/device.h"
#include "transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_kv_cache {
  drl_device dev;
  int n_layers, B_max, T_max, kv_dim; /* kv_dim = n_kv_heads * head size */
  int q_dim, V, qk_norm;              /* n_heads * head size, the vocabulary scored (vocab_used), per-head norms */
  float *k, *v;                       /* [L][B_max][T_max][kv_dim] each, on dev */
  int32_t *row_start;                 /* [B_max] on dev */
  int32_t *row_start_host, *len;      /* [B_max] on the host: first real position and positions filled, per slot */
  /* decode workspace on dev, for up to B_max rows */
  float *x, *x_mid, *xn, *rstd, *q, *kn, *vn, *att_out, *gate, *up, *h, *logits, *scratch;
  float *q_pre, *k_pre, *q_rstd, *k_rstd; /* qk_norm only: q and k before the per-head norms, and their rstd */
  int32_t *idx;       /* dev index arrays: decode [4][N] (token, slot, RoPE position, cache position), prefill [3][N] */
  int32_t *idx_host;  /* their host staging */
  int64_t idx_cap;    /* int32 entries of idx and idx_host */
  int *t_of;          /* [B_max] host: positions handed to drl_transformer_logits_at */
  uint8_t *seen;      /* [B_max] host: duplicate-slot check */
  drl_moe_work moe;   /* MoE blocks' decode workspace for B_max rows (when the model has MoE blocks) */
  void *block;        /* the device allocation behind every device pointer above */
  int64_t device_bytes; /* its size */
  void *host_block;   /* the host allocation behind every host pointer above */
} drl_kv_cache;

/* Creates an empty cache (every len 0) for m's config on m's device: B_max slots x T_max positions, T_max <= max_seq. */
drl_status drl_kv_cache_create(drl_kv_cache *c, const drl_transformer *m, int B_max, int T_max);

/* Frees everything; safe on a zeroed cache. */
void drl_kv_cache_free(drl_kv_cache *c);

/* The device bytes drl_kv_cache_create allocates for cf on dev with B_max slots x T_max positions (the cache and the
 * decode workspace), without allocating them. */
int64_t drl_kv_cache_device_bytes(const drl_transformer_config *cf, const drl_device *dev, int B_max, int T_max);

/* Runs the prompts tokens [B, P] (host; left-padded: row b's first real token at row_start[b] < P, NULL = no padding)
 * through drl_transformer_forward, so prefill is exactly the training computation (it replaces the model's saved
 * activations), in chunks of the model's B_max rows. Copies prompt b's keys and values into the G slots
 * b*G .. b*G + G - 1 (the rollouts of a prompt share its prefill), sets their row_start and len = P, and writes the
 * logits of the token after each prompt, divided by temperature, to logits [B, V] (host; V = the model's vocab_used).
 * Needs B*G <= B_max and P <= T_max (and <= the model's T_max). Other slots are left as they are. */
drl_status drl_kv_cache_prefill(drl_kv_cache *c, drl_transformer *m, const int32_t *tokens, const int32_t *row_start,
                                int B, int P, int G, float temperature, float *logits);

/* One new token per row: tokens[i] (host) enters slot slots[i] (host, distinct, prefilled; NULL = slot i) at position
 * t = len[slot] < T_max, attends to the slot's positions [row_start, t] and leaves its key and value there (len
 * becomes t + 1). Writes the next token's logits divided by temperature to logits [N, V] (host, V = vocab_used). */
drl_status drl_kv_cache_decode(drl_kv_cache *c, const drl_transformer *m, const int32_t *tokens, const int32_t *slots,
                               int N, float temperature, float *logits);

#ifdef __cplusplus
}
#endif
#endif /* DRL_KV_CACHE_H */
