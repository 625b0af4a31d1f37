/* Policies in Hugging Face form in and out: a directory with config.json and model.safetensors (or shards with
 * model.safetensors.index.json), tokenizer files beside them.
 *
 * dynrl's transformer layout maps one to one onto the Hugging Face tensors (both [out, in]; a norm or bias [n] is
 * dynrl's [n, 1]); RoPE is split-halves in both, so nothing is permuted on the way in or out:
 *   tok_emb              model.embed_tokens.weight        final_norm  model.norm.weight      lm_head  lm_head.weight
 *   layers.i.attn_norm   model.layers.i.input_layernorm.weight
 *   layers.i.wq|wk|wv|wo model.layers.i.self_attn.{q,k,v,o}_proj.weight   (bq|bk|bv: {q,k,v}_proj.bias)
 *   layers.i.q_norm|k_norm  model.layers.i.self_attn.{q,k}_norm.weight
 *   layers.i.ffn_norm    model.layers.i.post_attention_layernorm.weight
 *   layers.i.w_gate|w_up|w_down  model.layers.i.mlp.{gate,up,down}_proj.weight */
#ifndef DRL_HF_MODEL_H
#define DRL_HF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "data/checkpoint.h"
#include "kernels/layout.h"
#include "models/hf_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a policy came from: a Hugging Face directory, or a checkpoint that remembers one (its /hf group). */
typedef struct drl_hf_source {
  drl_hf_config cfg;
  char *config_text;       /* config.json as read */
  char source[256];        /* the directory, as an absolute path when it could be resolved */
  char config_hash[17];    /* drl_fnv1a64_hex of config_text */
  char dir[4096];          /* the directory itself ("" for a checkpoint) */
} drl_hf_source;

/* Fills s when path is a Hugging Face directory (*found = 1) or a checkpoint with an /hf group (*found = 2); *found =
 * 0 leaves s empty (a policy dynrl initialised, or nothing at path: the caller reports what it expected). The EOS
 * ids of the directory's generation_config.json (when the directory is there) join config.json's. */
drl_status drl_hf_source_open(const char *path, drl_hf_source *s, int *found);
void drl_hf_source_free(drl_hf_source *s);

/* Copies s's provenance into a checkpoint about to be written (pointers into s: keep s alive until then). */
void drl_hf_source_to_checkpoint(const drl_hf_source *s, drl_checkpoint *ck);

/* The Hugging Face name of layout tensor `name` into hf; DRL_ERR_UNSUPPORTED for one without (MoE tensors). */
drl_status drl_hf_tensor_name(const char *name, char *hf, size_t cap);

/* params[lay->total] (host) = the weights in directory dir. Every tensor of lay must be there with lay's shape; a
 * tensor of the files that dynrl would not use is an error (HF's rotary inv_freq buffers, and lm_head.weight when
 * tied, are skipped). Errors name the file, the tensor and what was expected. */
drl_status drl_hf_read_weights(const char *dir, const drl_layout *lay, int tied, float *params);

/* Writes a Hugging Face directory dir (created if missing): model.safetensors in dtype "F32" or "BF16" (shards of at
 * most max_shard_bytes past that), config.json (c's, torch_dtype set to match), generation_config.json, and, when
 * tokenizer_dir is not NULL or "", the tokenizer files found there. */
drl_status drl_hf_write(const char *dir, const drl_hf_config *c, const drl_layout *lay, const float *params,
                        const char *dtype, uint64_t max_shard_bytes, const char *tokenizer_dir);

/* `dynrl import`: the Hugging Face directory hf_dir as a dynrl policy file out_h5 (a checkpoint holding the weights
 * in fp32 and the directory's config.json and provenance, no optimizer state); trainer.init_from takes either. */
drl_status drl_hf_import(const char *hf_dir, const char *out_h5);

/* `dynrl export`: the policy of checkpoint ckpt (from a Hugging Face directory, or one dynrl initialised: then a
 * Llama) as a Hugging Face directory out_dir in dtype "F32" or "BF16"; model.safetensors is sharded past
 * max_shard_bytes; the tokenizer files of the source directory are copied when it still exists. */
drl_status drl_hf_export(const char *ckpt, const char *out_dir, const char *dtype, uint64_t max_shard_bytes);

#ifdef __cplusplus
}
#endif
#endif /* DRL_HF_MODEL_H */
