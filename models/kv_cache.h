/* Incremental decoding of the transformer policy with a KV cache whose prompt part is stored once per group.
 *
 * The cache holds the keys (after RoPE) and values of every layer on the model's device, in two stores: a prefix
 * store of n_groups prompts x P_cap positions and a suffix store of B_max sequences ("slots") x S_cap positions, with a
 * decode workspace for B_max rows; all of it is one allocation made at creation. Positions are the absolute columns of
 * drl_transformer_forward's left-padded layout: after a prefill of prompts P columns wide, slot s belongs to group
 * grp[s], whose prompt fills columns [0, P) in the prefix store (first real token at the group's row_start; RoPE
 * positions count from there), and its own tokens fill columns P, P + 1, ... at suffix positions 0, 1, ... The G
 * rollouts of a prompt share one group, so their prompt's keys and values are stored and read once
 * (drl_kv_cache_kv_bytes). A decoded token of slot s goes to column len[s] and attends to [row_start, len[s]]: the
 * keys the full-sequence forward shows that position. Every op is the training forward's (same kernels, same row
 * math; decode attention forms each key's terms as the forward does), so the logits agree with
 * drl_transformer_forward + drl_transformer_logits_at up to the GEMM library's dependence on the number of rows per
 * call (OpenBLAS edge kernels, cuBLAS algorithm choice). */
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
  int n_layers, B_max, kv_dim;   /* kv_dim = n_kv_heads * head size */
  int n_groups, P_cap, S_cap;    /* prefix store: n_groups x P_cap positions; suffix store: B_max x S_cap */
  int q_dim, V, qk_norm;         /* n_heads * head size, the vocabulary scored (vocab_used), per-head norms */
  int P;                         /* columns of the last prefill's prompts */
  float *kp, *vp;                /* prefix store [L][n_groups][P_cap][kv_dim] each, on dev */
  float *ks, *vs;                /* suffix store [L][B_max][S_cap][kv_dim] each, on dev */
  int64_t kv_bytes;              /* bytes of the four stores */
  int32_t *row_start;            /* [n_groups] on dev: each group's first real column */
  int32_t *row_start_host;       /* [n_groups] on the host */
  int32_t *grp, *len;            /* [B_max] on the host: each slot's group and columns filled (0: not prefilled) */
  /* decode workspace on dev, for up to B_max rows */
  float *x, *x_mid, *xn, *rstd, *q, *kn, *vn, *att_out, *gate, *up, *h, *logits, *scratch;
  float *q_pre, *k_pre, *q_rstd, *k_rstd; /* qk_norm only: q and k before the per-head norms, and their rstd */
  int32_t *idx;       /* dev index arrays: decode [6][N] (token, slot, group, RoPE position, column, suffix position),
                         prefill [3][N] (source row, group, position) */
  int32_t *idx_host;  /* their host staging */
  int64_t idx_cap;    /* int32 entries of idx and idx_host */
  int *t_of;          /* [B_max] host: positions handed to drl_transformer_logits_at */
  uint8_t *seen;      /* [B_max] host: duplicate-slot check */
  drl_moe_work moe;   /* MoE blocks' decode workspace for B_max rows (when the model has MoE blocks) */
  void *block;        /* the device allocation behind every device pointer above */
  int64_t device_bytes; /* its size */
  void *host_block;   /* the host allocation behind every host pointer above */
} drl_kv_cache;

/* Creates an empty cache (every len 0) for m's config on m's device: n_groups prompts of up to P_cap positions and
 * B_max slots of up to S_cap positions each, P_cap + S_cap <= max_seq, n_groups, B_max, P_cap, S_cap >= 1. */
drl_status drl_kv_cache_create(drl_kv_cache *c, const drl_transformer *m, int B_max, int n_groups, int P_cap,
                               int S_cap);

/* Frees everything; safe on a zeroed cache. */
void drl_kv_cache_free(drl_kv_cache *c);

/* The device bytes drl_kv_cache_create allocates for cf on dev (the stores and the decode workspace), without
 * allocating them. */
int64_t drl_kv_cache_device_bytes(const drl_transformer_config *cf, const drl_device *dev, int B_max, int n_groups,
                                  int P_cap, int S_cap);

/* Bytes of the key and value stores alone: 2 x layers x (n_groups x P_cap + B_max x S_cap) x kv_dim x 4. */
int64_t drl_kv_cache_kv_bytes(const drl_transformer_config *cf, int B_max, int n_groups, int P_cap, int S_cap);

/* Runs the prompts tokens [B, P] (host; left-padded: row b's first real token at row_start[b] < P, NULL = no padding)
 * through drl_transformer_forward, so prefill is exactly the training computation (it replaces the model's saved
 * activations), in chunks of the model's B_max rows, and writes the logits of the token after each prompt, divided by
 * temperature, to logits [B, V] (host; V = the model's vocab_used). Slots b*G .. b*G + G - 1 continue prompt b (len =
 * P): with share, they all read group b, which holds the prompt's keys and values once (B <= n_groups); without, slot
 * s reads a copy of its own in group s (B*G <= n_groups). Needs B*G <= B_max and P <= P_cap (and <= the model's
 * T_max). Every other slot is emptied (len 0). */
drl_status drl_kv_cache_prefill(drl_kv_cache *c, drl_transformer *m, const int32_t *tokens, const int32_t *row_start,
                                int B, int P, int G, int share, float temperature, float *logits);

/* One new token per row: tokens[i] (host) enters slot slots[i] (host, distinct, prefilled; NULL = slot i) at column
 * t = len[slot] < P + S_cap, attends to the columns [row_start, t] of its group and slot and leaves its key and value
 * there (len becomes t + 1). Writes the next token's logits divided by temperature to logits [N, V] (host, V =
 * vocab_used). Rows of one group given adjacently share each read of their prompt's keys (on the CPU). */
drl_status drl_kv_cache_decode(drl_kv_cache *c, const drl_transformer *m, const int32_t *tokens, const int32_t *slots,
                               int N, float temperature, float *logits);

#ifdef __cplusplus
}
#endif
#endif /* DRL_KV_CACHE_H */
