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

/* The tensors of one block, in layout order. */
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
