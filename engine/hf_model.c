/* Hugging Face directories in and out (hf_model.h). */
#define _XOPEN_SOURCE 700
#include "hf_model.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/atomic_file.h"
#include "data/file_read.h"
#include "data/safetensors.h"
#include "engine/config.h"
#include "engine/model_config.h"

/* ---- names ---- */

static const char *const kLayerNames[][2] = {
    {"attn_norm", "input_layernorm.weight"},   {"wq", "self_attn.q_proj.weight"},
    {"wk", "self_attn.k_proj.weight"},         {"wv", "self_attn.v_proj.weight"},
    {"wo", "self_attn.o_proj.weight"},         {"bq", "self_attn.q_proj.bias"},
    {"bk", "self_attn.k_proj.bias"},           {"bv", "self_attn.v_proj.bias"},
    {"q_norm", "self_attn.q_norm.weight"},     {"k_norm", "self_attn.k_norm.weight"},
    {"ffn_norm", "post_attention_layernorm.weight"}, {"w_gate", "mlp.gate_proj.weight"},
    {"w_up", "mlp.up_proj.weight"},            {"w_down", "mlp.down_proj.weight"},
};

drl_status drl_hf_tensor_name(const char *name, char *hf, size_t cap) {
  static const char *const top[][2] = {
      {"tok_emb", "model.embed_tokens.weight"}, {"final_norm", "model.norm.weight"}, {"lm_head", "lm_head.weight"}};
  for (size_t i = 0; i < sizeof top / sizeof top[0]; ++i)
    if (strcmp(name, top[i][0]) == 0) {
      snprintf(hf, cap, "%s", top[i][1]);
      return DRL_OK;
    }
  int layer = -1, used = 0;
  if (sscanf(name, "layers.%d.%n", &layer, &used) == 1 && used > 0)
    for (size_t i = 0; i < sizeof kLayerNames / sizeof kLayerNames[0]; ++i)
      if (strcmp(name + used, kLayerNames[i][0]) == 0) {
        snprintf(hf, cap, "model.layers.%d.%s", layer, kLayerNames[i][1]);
        return DRL_OK;
      }
  return DRL_FAIL(DRL_ERR_UNSUPPORTED, "tensor %s has no Hugging Face counterpart (MoE policies stay in dynrl's "
                  "checkpoints)", name);
}

/* ---- reading ---- */

static int skipped_tensor(const char *hf, int tied) {
  size_t n = strlen(hf), k = strlen(".rotary_emb.inv_freq");
  return (n > k && strcmp(hf + n - k, ".rotary_emb.inv_freq") == 0) || (tied && strcmp(hf, "lm_head.weight") == 0);
}

drl_status drl_hf_read_weights(const char *dir, const drl_layout *lay, int tied, float *params) {
  drl_safetensors st;
  DRL_TRY(drl_st_open(&st, dir));
  drl_status s = DRL_OK;
  char hf[128];
  char *used = (char *)calloc((size_t)st.count + 1, 1);
  if (!used) {
    drl_st_close(&st);
    return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory", dir);
  }
  for (int i = 0; s == DRL_OK && i < lay->count; ++i) {
    const drl_tensor_info *ti = &lay->tensors[i];
    s = drl_hf_tensor_name(ti->name, hf, sizeof hf);
    if (s != DRL_OK) break;
    const drl_st_tensor *t = drl_st_find(&st, hf);
    if (!t) {
      s = DRL_FAIL(DRL_ERR_FORMAT, "%s: tensor \"%s\" is missing (the config asks for it as %s [%lld, %lld])", dir, hf,
                   ti->name, (long long)ti->shape[0], (long long)ti->shape[1]);
      break;
    }
    used[t - st.tensors] = 1;
    if (strcmp(t->dtype, "F32") && strcmp(t->dtype, "BF16") && strcmp(t->dtype, "F16")) {
      s = DRL_FAIL(DRL_ERR_UNSUPPORTED, "%s: tensor \"%s\" in %s has dtype %s (dynrl reads F32, BF16 and F16)", dir, hf,
                   st.files[t->file].path, t->dtype);
      break;
    }
    /* [n] in the file is [n, 1] here; a matrix is [out, in] in both. */
    int match = ti->shape[1] == 1 ? (t->ndim == 1 && t->shape[0] == ti->shape[0])
                                  : (t->ndim == 2 && t->shape[0] == ti->shape[0] && t->shape[1] == ti->shape[1]);
    if (!match) {
      char got[96] = "";
      for (int d = 0; d < t->ndim && d < 4; ++d)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
      if (ti->shape[1] == 1)
        s = DRL_FAIL(DRL_ERR_FORMAT, "%s: tensor \"%s\" in %s has shape [%s], config.json gives [%lld]", dir, hf,
                     st.files[t->file].path, got, (long long)ti->shape[0]);
      else
        s = DRL_FAIL(DRL_ERR_FORMAT, "%s: tensor \"%s\" in %s has shape [%s], config.json gives [%lld, %lld]", dir, hf,
                     st.files[t->file].path, got, (long long)ti->shape[0], (long long)ti->shape[1]);
      break;
    }
    s = drl_st_read_f32(&st, t, params + ti->offset);
  }
  for (int i = 0; s == DRL_OK && i < st.count; ++i)
    if (!used[i] && !skipped_tensor(st.tensors[i].name, tied))
      s = DRL_FAIL(DRL_ERR_UNSUPPORTED, "%s: tensor \"%s\" in %s is not part of the model config.json describes "
                   "(a feature dynrl does not implement?)", dir, st.tensors[i].name, st.files[st.tensors[i].file].path);
  free(used);
  drl_st_close(&st);
  return s;
}

/* ---- sources ---- */

static drl_status read_text(const char *path, char **out, size_t *len) {
  return drl_read_file(path, (size_t)64 << 20, out, len);
}

void drl_hf_source_free(drl_hf_source *s) {
  free(s->config_text);
  memset(s, 0, sizeof *s);
}

/* The EOS ids of dir/generation_config.json (an integer or a list; the file is optional) join c's: generation stops
 * on any of them (Qwen2.5 lists <|im_end|> and <|endoftext|>, its config.json only the first). */
static drl_status add_generation_eos(const char *dir, drl_hf_config *c) {
  char file[4200];
  snprintf(file, sizeof file, "%s/generation_config.json", dir);
  struct stat sb;
  if (stat(file, &sb) != 0) return DRL_OK;
  char *text = NULL;
  size_t len = 0;
  DRL_TRY(read_text(file, &text, &len));
  json_error_t jerr;
  json_t *root = json_loadb(text, len, 0, &jerr);
  free(text);
  if (!root) return DRL_FAIL(DRL_ERR_FORMAT, "%s: not valid JSON: %s (line %d)", file, jerr.text, jerr.line);
  const json_t *eos = json_object_get(root, "eos_token_id");
  drl_status st = DRL_OK;
  size_t n = json_is_array(eos) ? json_array_size(eos) : (eos && !json_is_null(eos) ? 1 : 0);
  for (size_t i = 0; st == DRL_OK && i < n; ++i) {
    const json_t *v = json_is_array(eos) ? json_array_get(eos, i) : eos;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= c->model.vocab) {
      st = DRL_FAIL(DRL_ERR_FORMAT, "%s: eos_token_id must be ids in [0, %d)", file, c->model.vocab);
      break;
    }
    int id = (int)json_integer_value(v), known = 0;
    for (int k = 0; k < c->n_eos; ++k) known |= c->eos_token_ids[k] == id;
    if (!known && c->n_eos < DRL_HF_MAX_EOS) c->eos_token_ids[c->n_eos++] = id;
  }
  json_decref(root);
  return st;
}

drl_status drl_hf_source_open(const char *path, drl_hf_source *s, int *found) {
  memset(s, 0, sizeof *s);
  *found = 0;
  size_t len = 0;
  char file[4200];
  if (drl_is_dir(path)) {
    snprintf(file, sizeof file, "%s/config.json", path);
    DRL_TRY(read_text(file, &s->config_text, &len));
    snprintf(s->dir, sizeof s->dir, "%s", path);
    char *abs = realpath(path, NULL);
    snprintf(s->source, sizeof s->source, "%s", abs ? abs : path);
    free(abs);
    *found = 1;
  } else {
    FILE *f = fopen(path, "rb");
    if (!f) return DRL_OK; /* nothing there: the caller names what it wanted */
    fclose(f);
    drl_checkpoint ck;
    DRL_TRY(drl_checkpoint_read_provenance(path, &ck));
    if (!ck.hf_config) {
      drl_checkpoint_free(&ck);
      return DRL_OK;
    }
    s->config_text = ck.hf_config;
    ck.hf_config = NULL;
    len = strlen(s->config_text);
    snprintf(s->source, sizeof s->source, "%s", ck.hf_source);
    snprintf(file, sizeof file, "%s:/hf/config", path);
    drl_checkpoint_free(&ck);
    *found = 2;
  }
  drl_fnv1a64_hex(s->config_text, len, s->config_hash);
  drl_status st = drl_hf_config_parse(file, s->config_text, len, &s->cfg);
  if (st == DRL_OK) st = add_generation_eos(*found == 1 ? s->dir : s->source, &s->cfg);
  if (st != DRL_OK) {
    drl_hf_source_free(s);
    *found = 0;
  }
  return st;
}

void drl_hf_source_to_checkpoint(const drl_hf_source *s, drl_checkpoint *ck) {
  ck->hf_config = s->config_text;
  snprintf(ck->hf_model_type, sizeof ck->hf_model_type, "%s", s->cfg.model_type);
  snprintf(ck->hf_source, sizeof ck->hf_source, "%s", s->source);
  snprintf(ck->hf_config_hash, sizeof ck->hf_config_hash, "%s", s->config_hash);
}

/* ---- writing ---- */

static drl_status write_text(const char *path, const char *text) {
  drl_atomic_file a;
  DRL_TRY(drl_atomic_open(&a, path));
  drl_status st = drl_atomic_write(&a, text, strlen(text));
  if (st == DRL_OK) st = drl_atomic_commit(&a);
  drl_atomic_abort(&a);
  return st;
}

static drl_status copy_file(const char *from, const char *to) {
  char *text = NULL;
  size_t len = 0;
  DRL_TRY(read_text(from, &text, &len));
  drl_atomic_file a;
  drl_status st = drl_atomic_open(&a, to);
  if (st == DRL_OK) st = drl_atomic_write(&a, text, len);
  if (st == DRL_OK) st = drl_atomic_commit(&a);
  drl_atomic_abort(&a);
  free(text);
  return st;
}

drl_status drl_hf_write(const char *dir, const drl_hf_config *c, const drl_layout *lay, const float *params,
                        const char *dtype, uint64_t max_shard_bytes, const char *tokenizer_dir) {
  int bf16 = strcmp(dtype, "BF16") == 0;
  if (!bf16 && strcmp(dtype, "F32") != 0)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: dtype %s (dynrl writes F32 or BF16)", dir, dtype);
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return DRL_FAIL(DRL_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
  drl_st_source *ts = (drl_st_source *)calloc((size_t)lay->count + 1, sizeof *ts);
  char(*names)[128] = (char(*)[128])calloc((size_t)lay->count + 1, sizeof *names);
  drl_status st = ts && names ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "%s: out of memory", dir);
  int n = 0;
  for (int i = 0; st == DRL_OK && i < lay->count; ++i) {
    const drl_tensor_info *ti = &lay->tensors[i];
    st = drl_hf_tensor_name(ti->name, names[n], sizeof names[n]);
    if (st != DRL_OK) break;
    drl_st_source *t = &ts[n++];
    t->name = names[n - 1];
    t->data = params + ti->offset;
    t->ndim = ti->shape[1] == 1 ? 1 : 2;
    t->shape[0] = ti->shape[0];
    t->shape[1] = ti->shape[1];
  }
  char path[4200];
  if (st == DRL_OK) st = drl_st_write_model(dir, ts, n, dtype, max_shard_bytes, NULL);
  free(ts);
  free(names);
  drl_hf_config out = *c;
  snprintf(out.torch_dtype, sizeof out.torch_dtype, "%s", bf16 ? "bfloat16" : "float32");
  char *json = NULL;
  if (st == DRL_OK) st = drl_hf_config_to_json(&out, &json);
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (st == DRL_OK) st = write_text(path, json);
  free(json);
  json = NULL;
  /* generation_config.json: the stop ids (all of them: multi-EOS models stop on any). */
  if (st == DRL_OK) {
    json_t *g = json_object(), *eos = json_array();
    int bad = !g || !eos;
    for (int i = 0; !bad && i < c->n_eos; ++i) bad = json_array_append_new(eos, json_integer(c->eos_token_ids[i]));
    if (!bad && c->bos_token_id >= 0) bad = json_object_set_new(g, "bos_token_id", json_integer(c->bos_token_id));
    if (!bad && c->n_eos > 0)
      bad = json_object_set_new(g, "eos_token_id", c->n_eos == 1 ? json_integer(c->eos_token_ids[0]) : json_incref(eos));
    json_decref(eos);
    json = bad ? NULL : json_dumps(g, JSON_INDENT(2));
    json_decref(g);
    if (!json) st = DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for generation_config.json", dir);
  }
  snprintf(path, sizeof path, "%s/generation_config.json", dir);
  if (st == DRL_OK) st = write_text(path, json);
  free(json);
  static const char *const tokenizer_files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                                "chat_template.jinja", "vocab.json", "merges.txt"};
  for (size_t i = 0; st == DRL_OK && tokenizer_dir && tokenizer_dir[0] && i < 6; ++i) {
    char from[4200];
    snprintf(from, sizeof from, "%s/%s", tokenizer_dir, tokenizer_files[i]);
    struct stat sb;
    if (stat(from, &sb) != 0) continue;
    snprintf(path, sizeof path, "%s/%s", dir, tokenizer_files[i]);
    st = copy_file(from, path);
  }
  return st;
}

/* ---- import and export ---- */

drl_status drl_hf_import(const char *hf_dir, const char *out_h5) {
  drl_hf_source src;
  int found = 0;
  DRL_TRY(drl_hf_source_open(hf_dir, &src, &found));
  if (found != 1) {
    drl_hf_source_free(&src);
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: not a Hugging Face directory (no config.json)", hf_dir);
  }
  drl_checkpoint ck;
  memset(&ck, 0, sizeof ck);
  drl_status st = drl_transformer_layout(&src.cfg.model, &ck.layout);
  if (st == DRL_OK) {
    ck.params = (float *)malloc((size_t)(ck.layout.total ? ck.layout.total : 1) * sizeof(float));
    if (!ck.params) st = drl_fail_oom("the imported parameters", (size_t)ck.layout.total * sizeof(float), "the host");
  }
  if (st == DRL_OK) st = drl_hf_read_weights(hf_dir, &ck.layout, src.cfg.model.tied_embeddings, ck.params);
  if (st == DRL_OK) {
    snprintf(ck.phase, sizeof ck.phase, "import");
    drl_hf_source_to_checkpoint(&src, &ck);
    st = drl_checkpoint_write(out_h5, &ck);
    ck.hf_config = NULL; /* src's */
  }
  drl_checkpoint_free(&ck);
  drl_hf_source_free(&src);
  return st;
}

/* The architecture of a policy dynrl initialised: its checkpoint's configuration and the embedding's rows. */
static drl_status own_policy_config(const char *ckpt, const drl_checkpoint *ck, drl_hf_config *hc) {
  drl_config cfg;
  DRL_TRY(drl_config_load_string(&cfg, ck->config_yaml ? ck->config_yaml : "", ckpt));
  drl_transformer_config tc;
  drl_model_config(&cfg, ck->layout.count > 0 ? (int)ck->layout.tensors[0].shape[0] : 0, &tc);
  int moe = cfg.model.ffn == DRL_CFG_FFN_MOE;
  drl_config_free(&cfg);
  if (moe) return DRL_FAIL(DRL_ERR_UNSUPPORTED, "%s: an MoE policy has no Hugging Face form in dynrl", ckpt);
  drl_hf_config_from_model(&tc, hc);
  return DRL_OK;
}

drl_status drl_hf_export(const char *ckpt, const char *out_dir, const char *dtype, uint64_t max_shard_bytes) {
  drl_checkpoint ck;
  DRL_TRY(drl_checkpoint_read(ckpt, NULL, &ck));
  drl_hf_config hc;
  drl_status st = DRL_OK;
  char where[4200];
  snprintf(where, sizeof where, "%s:/hf/config", ckpt);
  if (ck.hf_config) st = drl_hf_config_parse(where, ck.hf_config, strlen(ck.hf_config), &hc);
  else st = own_policy_config(ckpt, &ck, &hc);
  if (st == DRL_OK) {
    /* The checkpoint's layout must be the one the config describes (a file edited by hand, or another program). */
    drl_layout want;
    st = drl_transformer_layout(&hc.model, &want);
    if (st == DRL_OK) st = drl_layout_compare(&ck.layout, &want, ckpt, "its Hugging Face config");
    drl_layout_free(&want);
  }
  const char *tok = ck.hf_config && drl_is_dir(ck.hf_source) ? ck.hf_source : NULL;
  if (st == DRL_OK) st = drl_hf_write(out_dir, &hc, &ck.layout, ck.params, dtype, max_shard_bytes, tok);
  drl_checkpoint_free(&ck);
  return st;
}
