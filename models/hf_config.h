/* A Hugging Face config.json of a Llama, Qwen2, Qwen3 or Mistral causal LM as a transformer config, and back.
 *
 * Accepted: model_type llama, qwen2, qwen3, mistral; hidden_act silu; GQA; head_dim apart from hidden/heads; Qwen2's
 * q/k/v biases; Qwen3's q/k norms; rope_theta with rope_scaling of type default, linear or llama3 (the v4 keys at the
 * top level or v5's rope_parameters, "rope_type" or "type"); tie_word_embeddings. Anything dynrl does not implement
 * is DRL_ERR_UNSUPPORTED naming the field and its value (a sliding window, another activation or RoPE type, biases of
 * o_proj or the MLP, quantization, another architecture): never a silently different model. */
#ifndef DRL_HF_CONFIG_H
#define DRL_HF_CONFIG_H

#include <stddef.h>

#include "models/transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DRL_HF_MAX_EOS 8

typedef struct drl_hf_config {
  drl_transformer_config model;
  char model_type[16];    /* llama | qwen2 | qwen3 | mistral */
  char architecture[64];  /* the class transformers and vLLM pick: LlamaForCausalLM, Qwen2ForCausalLM, ... */
  char torch_dtype[16];   /* the stored dtype ("bfloat16", "float32"; "" when absent) */
  int bos_token_id;       /* -1: none */
  int n_eos, eos_token_ids[DRL_HF_MAX_EOS];
  int max_position_embeddings;
} drl_hf_config;

/* Parses config.json text (named `name` in messages) into c. */
drl_status drl_hf_config_parse(const char *name, const char *text, size_t len, drl_hf_config *c);

/* The config.json of c (caller frees *json): architectures, model_type, the sizes, RoPE at the top level (rope_theta,
 * rope_scaling; read by transformers v4 and v5 and by vLLM), the token ids and torch_dtype. */
drl_status drl_hf_config_to_json(const drl_hf_config *c, char **json);

/* The HF config of a policy dynrl initialised itself: a Llama (the same math, split-halves RoPE). */
void drl_hf_config_from_model(const drl_transformer_config *model, drl_hf_config *c);

#ifdef __cplusplus
}
#endif
#endif /* DRL_HF_CONFIG_H */
