/* The transformer policy: a Llama/Qwen-style decoder (token embedding, L blocks of [RMSNorm -> causal GQA attention
 * with RoPE -> residual -> RMSNorm -> SwiGLU -> residual], final RMSNorm, LM head tied to the embedding by default).
 * The attention covers Hugging Face's Llama, Qwen2 and Qwen3: q = xn Wq^T (+ bq), k and v likewise; with qk_norm,
 * q and k are RMS-normed per head (one gain [head_dim] shared by the heads); then RoPE (optionally scaled).
 *
 * Parameters, gradients and the AdamW moments each live in one contiguous fp32 buffer on the model's device, with
 * one offset table (drl_layout) built from the config: checkpointing, all-reduce, sharding and SPSA perturbation
 * are one call over a flat buffer. Weights use the PyTorch nn.Linear layout [out, in]. Activations are allocated once
 * for the largest batch (B_max x T_max tokens).
 *
 * Sequences in a batch are [B, T] token ids. Row b may be left-padded: row_start[b] is its first real token; positions
 * (for RoPE) count from there. Targets [B, T] name the token each position predicts (-1: not scored). */
#ifndef DRL_TRANSFORMER_H
#define DRL_TRANSFORMER_H

#include <stdint.h>

#include "kernels/device.h"
#include "kernels/layout.h"
#include "models/moe.h"
#include "models/params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* RoPE frequency scaling (Hugging Face's rope_scaling / rope_parameters): none, linear (every inverse frequency / factor)
 * or llama3 (wavelengths above original_max_pos / low_freq_factor divided by factor, below original_max_pos /
 * high_freq_factor kept, a smooth blend between). */
typedef enum drl_rope_scaling_type { DRL_ROPE_SCALING_NONE = 0, DRL_ROPE_SCALING_LINEAR, DRL_ROPE_SCALING_LLAMA3 } drl_rope_scaling_type;

typedef struct drl_rope_scaling {
  int type; /* drl_rope_scaling_type */
  float factor, low_freq_factor, high_freq_factor;
  int original_max_pos;
} drl_rope_scaling;

typedef struct drl_transformer_config {
  int vocab, d_model, n_layers, n_heads, n_kv_heads, d_ff, max_seq;
  int tied_embeddings;
  float rope_theta, init_std, norm_eps;
  drl_moe_config moe; /* moe.experts > 0: blocks from moe.first_layer on have an MoE FFN instead of d_ff's SwiGLU */
  /* Pretrained architectures (Llama, Qwen2, Qwen3); zero gives the defaults. */
  int head_dim;   /* 0: d_model / n_heads; Qwen3 sets it apart from them */
  int qkv_bias;   /* the q, k and v projections have biases (Qwen2) */
  int qk_norm;    /* per-head RMSNorm of q and k (gain [head_dim], eps norm_eps) before RoPE (Qwen3) */
  int vocab_used; /* 0: vocab. Rows [vocab_used, vocab) of the embedding pad the vocabulary: never scored or sampled */
  drl_rope_scaling rope_scaling;
} drl_transformer_config;

/* Saved activations of the last forward pass (device pointers into one buffer). Per-layer tensors are indexed
 * [layer * rows * width ...]; rows = B * T of that pass. */
typedef struct drl_transformer_acts {
  float *res;       /* [L + 1][rows, C]: res[l] is the input of block l; res[L] feeds the final norm */
  float *res_mid;   /* [L][rows, C]: after the attention residual */
  float *xn1, *xn2; /* [L][rows, C]: normed inputs of attention and FFN */
  float *rstd1, *rstd2; /* [L][rows] */
  float *q, *k, *v; /* [L][rows, H*D], [L][rows, KV*D] x2, after RoPE */
  float *q_pre, *k_pre;     /* qk_norm only: [L][rows, H*D], [L][rows, KV*D], the projections before the norm */
  float *q_rstd, *k_rstd;   /* qk_norm only: [L][rows * H], [L][rows * KV], the per-head norms' rstd */
  float *att;       /* [L][B, H, T, T] */
  float *att_out;   /* [L][rows, H*D] */
  float *gate, *up, *h; /* [L][rows, F] */
  float *xf;        /* [rows, C] final normed hidden */
  float *rstdf;     /* [rows] */
  float *logprob, *entropy; /* [rows] */
  /* backward scratch */
  float *dres, *dxn, *dwide, *dgate, *dup, *dq, *dk, *dv, *datt;
  float *dq_pre, *dk_pre; /* qk_norm only: [rows, H*D], [rows, KV*D] */
  float *scratch;   /* kernel scratch (attention, rmsnorm, lm head) */
  void *emb_scratch;
  int32_t *tokens, *targets, *pos, *row_start; /* device copies of the batch */
  drl_moe_work *moe;          /* [L] host array: the saved pass of each MoE block (others unused) */
  drl_moe_grad_work moe_grad; /* backward scratch shared by the MoE blocks */
  uint8_t *moe_mask;          /* [rows]: the positions an auxiliary loss covers */
} drl_transformer_acts;

/* Called by drl_transformer_backward as gradients become final: grads[from, layout.total) will not change again in
 * this backward (blocks finish last to first, the token embedding last), so a data-parallel reduction of that range
 * can start while the rest of the backward runs. An error ends the backward with it. */
typedef drl_status (*drl_grad_ready_fn)(void *user, float *grads, int64_t from);

typedef struct drl_transformer {
  drl_transformer_config cfg;
  drl_device dev;
  drl_params ps;                 /* layout, parameters, gradients, AdamW moments (models/params.h) */
  float *rope_cos, *rope_sin;    /* on dev, [max_seq, head_dim/2] */
  drl_transformer_acts acts;
  void *act_block;               /* the one allocation behind acts */
  int32_t *batch_host;           /* host staging of a batch's positions and targets, [2, B_max * T_max] */
  int B_max, T_max;
  int B, T;                      /* shape of the last forward */
  float temperature;             /* and its temperature */
  int has_row_start;             /* and whether it had left padding */
  int lm_chunk_rows;
  int64_t scratch_floats;
  int64_t act_bytes;             /* the size of act_block */
  drl_grad_ready_fn grad_hook;   /* see drl_transformer_set_grad_hook */
  void *grad_hook_user;
  float *moe_bias, *moe_aux;     /* on dev, [L, E]: the balancing bias, an auxiliary loss's dL/ds_hat (MoE only) */
  int moe_has_aux, moe_has_mask; /* for the next backward */
} drl_transformer;

/* Checks a config (positive sizes, an even head size (n_heads divides d_model unless head_dim is set), n_kv_heads
 * divides n_heads, vocab_used <= vocab, a known RoPE scaling with valid factors). */
drl_status drl_transformer_config_check(const drl_transformer_config *cfg);

/* The head size D: head_dim, or d_model / n_heads when it is 0. */
int drl_transformer_head_dim(const drl_transformer_config *cfg);

/* The ids the LM head scores and samples: vocab_used, or vocab when it is 0. */
int drl_transformer_vocab_used(const drl_transformer_config *cfg);

/* Builds the offset table of cfg (names "tok_emb", "layers.3.wq", "final_norm", "lm_head" when untied, ...). A block's
 * optional tensors follow its FFN's: "layers.{l}.bq" [H*D], "bk", "bv" [KV*D] (qkv_bias), then "q_norm", "k_norm" [D]
 * (qk_norm), all without weight decay; a config without them has the layout it had before they existed. */
drl_status drl_transformer_layout(const drl_transformer_config *cfg, drl_layout *layout);

/* Creates the model on dev with activations for up to B_max x T_max tokens (T_max <= max_seq) and initialises the
 * parameters from seed (DRL_RNG_INIT streams addressed by flat index: N(0, init_std) matrices, residual output
 * projections scaled by 1/sqrt(2 L), norm gains 1, biases 0); seed DRL_TRANSFORMER_NO_INIT leaves them 0, for a
 * caller that loads pretrained weights next. */
#define DRL_TRANSFORMER_NO_INIT UINT64_MAX
drl_status drl_transformer_create(drl_transformer *model, const drl_transformer_config *cfg, const drl_device *dev,
                                  int B_max, int T_max, uint64_t seed);

/* The bytes a model of cfg holds on dev for B_max x T_max tokens: the parameter, gradient and AdamW buffers (two
 * moments), the activations with the kernels' scratch (what drl_transformer_create allocates as one block) and the
 * RoPE tables. Allocates nothing on dev. */
typedef struct drl_model_memory {
  int64_t params, grads, optimizer, activations, rope;
} drl_model_memory;
drl_status drl_transformer_memory(const drl_transformer_config *cfg, const drl_device *dev, int B_max, int T_max,
                                  drl_model_memory *mem);

/* Frees everything the model holds; safe on a zeroed model. */
void drl_transformer_free(drl_transformer *model);

/* Forward over host arrays tokens/targets [B, T] (targets may be NULL: nothing scored) and row_start [B] (NULL: no
 * padding). Fills acts; logprob/entropy (host, [B*T], may be NULL) receive per-position log-probability of the target
 * under softmax(logits / temperature) (0 where unscored) and the entropy of that softmax. Tokens are ids < vocab;
 * the softmax runs over the first vocab_used ids only (the rest pad the vocabulary): targets must be < vocab_used. */
drl_status drl_transformer_forward(drl_transformer *model, const int32_t *tokens, const int32_t *targets,
                                   const int32_t *row_start, int B, int T, float temperature, float *logprob,
                                   float *entropy);

/* Backward of L = sum_n dlogprob[n] * logprob[n] (host dlogprob [B*T]) through the last forward; adds into
 * model->ps.grads (call drl_params_zero_grads first for a fresh step). */
drl_status drl_transformer_backward(drl_transformer *model, const float *dlogprob);

/* Installs (fn, user) as the model's gradient hook; fn NULL removes it. */
void drl_transformer_set_grad_hook(drl_transformer *model, drl_grad_ready_fn fn, void *user);

/* MoE: the routes of the last forward. counts[l E + e] += tokens of block l routed to expert e, and (score_sums not
 * NULL) score_sums[l E + e] += the sum over those tokens of s_e / sum_j s_j (the auxiliary loss's P_e times T), over the
 * positions with real[n] != 0 (host [B T]; NULL: all). Dense blocks add nothing. */
drl_status drl_transformer_moe_routes(const drl_transformer *model, const uint8_t *real, double *counts,
                                      double *score_sums);

/* MoE: the balancing bias of every block (host [L E]; dense blocks' entries ignored), used from the next forward. */
drl_status drl_transformer_moe_set_bias(drl_transformer *model, const float *bias);

/* MoE: an auxiliary loss for the next backward: aux[l E + e] = its gradient with respect to each token's
 * s_e / sum_j s_j in block l, at the positions with real[n] != 0 (NULL: all). aux NULL removes it. */
drl_status drl_transformer_moe_set_aux(drl_transformer *model, const float *aux, const uint8_t *real);

/* Logits [B, vocab_used] (host) at position t_of[b] of each row from the last forward, scaled by 1/temperature. */
drl_status drl_transformer_logits_at(drl_transformer *model, const int *t_of, float temperature, float *logits);

#ifdef __cplusplus
}
#endif
#endif /* DRL_TRANSFORMER_H */
