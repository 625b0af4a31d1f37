/* Parameter access for code that runs the policy's layers itself (the KV-cache decoder): which tensor of a layer,
 * and where the shared ones live. Internal to models/ and samplers/; a host trainer never needs it. */
#ifndef DRL_TRANSFORMER_INTERNAL_H
#define DRL_TRANSFORMER_INTERNAL_H

#include <stddef.h>

#include "models/carve.h"
#include "transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The tensors every dense block starts with, in layout order (optional ones follow; see drl_transformer_layout). */
typedef enum drl_transformer_tensor {
  DRL_T_ATTN_NORM,
  DRL_T_WQ,
  DRL_T_WK,
  DRL_T_WV,
  DRL_T_WO,
  DRL_T_FFN_NORM,
  DRL_T_W_GATE,
  DRL_T_W_UP,
  DRL_T_W_DOWN,
  DRL_T_PER_LAYER
} drl_transformer_tensor;

/* Device pointer to tensor `which` of block `layer` in the parameter buffer. */
float *drl_transformer_layer_param(const drl_transformer *m, int layer, drl_transformer_tensor which);

/* The attention inputs of block `layer` over rows tokens at RoPE positions pos (on dev): q [rows, H*D], k and v
 * [rows, KV*D] = xn W^T (+ bias), q and k then RMS-normed per head (qk_norm) and rotated. With qk_norm, q_pre / k_pre
 * receive q and k before the norm and q_rstd [rows*H] / k_rstd [rows*KV] its rstd; otherwise they may be NULL. */
drl_status drl_transformer_qkv_forward(const drl_transformer *m, int layer, const float *xn, const int32_t *pos,
                                       int rows, float *q, float *k, float *v, float *q_pre, float *k_pre,
                                       float *q_rstd, float *k_rstd);

/* The FFN of block `layer` over rows tokens: out[rows, C] += FFN(xn). A dense block uses gate, up, h [rows, d_ff] as
 * scratch, an MoE block `work` (sized for at least rows tokens). */
drl_status drl_transformer_ffn_forward(const drl_transformer *m, int layer, const float *xn, float *out, int rows,
                                       float *gate, float *up, float *h, drl_moe_work *work);

/* Whether block `layer` has an MoE FFN. */
int drl_transformer_is_moe(const drl_transformer *m, int layer);

/* Device pointers to the token embedding [V, C], the final norm gain [C] and the LM head [V, C] (the embedding when
 * tied). */
float *drl_transformer_tok_emb(const drl_transformer *m);
float *drl_transformer_final_norm(const drl_transformer *m);
float *drl_transformer_lm_head(const drl_transformer *m);

#ifdef __cplusplus
}
#endif
#endif /* DRL_TRANSFORMER_INTERNAL_H */
