/* Hugging Face config.json <-> drl_transformer_config (hf_config.h). */
#include "hf_config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- typed reads: a wrong type is an error naming the key; an absent key keeps the default ---- */

typedef struct reader {
  const char *name; /* the file, for messages */
  json_t *root;
} reader;

static drl_status wrong_type(const reader *r, const char *key, const char *want) {
  return DRL_FAIL(DRL_ERR_FORMAT, "%s: \"%s\" must be %s", r->name, key, want);
}

static drl_status get_int(const reader *r, const json_t *obj, const char *key, int *out, int required) {
  const json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) {
    if (required) return DRL_FAIL(DRL_ERR_FORMAT, "%s: \"%s\" is missing", r->name, key);
    return DRL_OK;
  }
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0x7fffffff)
    return wrong_type(r, key, "an integer >= 0");
  *out = (int)json_integer_value(v);
  return DRL_OK;
}

static drl_status get_num(const reader *r, const json_t *obj, const char *key, double *out) {
  const json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) return DRL_OK;
  if (!json_is_number(v)) return wrong_type(r, key, "a number");
  *out = json_number_value(v);
  return DRL_OK;
}

static drl_status get_bool(const reader *r, const json_t *obj, const char *key, int *out) {
  const json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) return DRL_OK;
  if (!json_is_boolean(v)) return wrong_type(r, key, "true or false");
  *out = json_is_true(v);
  return DRL_OK;
}

static drl_status get_str(const reader *r, const json_t *obj, const char *key, char *out, size_t cap) {
  const json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) return DRL_OK;
  if (!json_is_string(v)) return wrong_type(r, key, "a string");
  if (strlen(json_string_value(v)) >= cap)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: \"%s\" = \"%.40s...\" is too long", r->name, key, json_string_value(v));
  snprintf(out, cap, "%s", json_string_value(v));
  return DRL_OK;
}

static drl_status unsupported(const reader *r, const char *key, const char *value, const char *why) {
  return DRL_FAIL(DRL_ERR_UNSUPPORTED, "%s: %s = %s: %s", r->name, key, value, why);
}

/* ---- the pieces ---- */

static drl_status parse_eos(const reader *r, drl_hf_config *c) {
  const json_t *v = json_object_get(r->root, "eos_token_id");
  c->n_eos = 0;
  if (!v || json_is_null(v)) return DRL_OK;
  if (json_is_integer(v)) {
    c->eos_token_ids[c->n_eos++] = (int)json_integer_value(v);
    return DRL_OK;
  }
  if (!json_is_array(v) || json_array_size(v) > DRL_HF_MAX_EOS)
    return wrong_type(r, "eos_token_id", "an integer or a list of at most 8 integers");
  size_t i;
  const json_t *e;
  json_array_foreach(v, i, e) {
    if (!json_is_integer(e) || json_integer_value(e) < 0) return wrong_type(r, "eos_token_id", "a list of integers >= 0");
    c->eos_token_ids[c->n_eos++] = (int)json_integer_value(e);
  }
  return DRL_OK;
}

/* RoPE: rope_theta and rope_scaling at the top level (transformers v4 and the hub), or v5's rope_parameters holding
 * both. A scaling's type is "rope_type" or the older "type". */
static drl_status parse_rope(const reader *r, drl_transformer_config *m) {
  double theta = 10000.0;
  const json_t *params = json_object_get(r->root, "rope_parameters");
  const json_t *scaling = json_object_get(r->root, "rope_scaling");
  if (params && !json_is_null(params) && !json_is_object(params))
    return wrong_type(r, "rope_parameters", "an object");
  if (scaling && !json_is_null(scaling) && !json_is_object(scaling)) return wrong_type(r, "rope_scaling", "an object");
  DRL_TRY(get_num(r, r->root, "rope_theta", &theta));
  if (json_is_object(params)) DRL_TRY(get_num(r, params, "rope_theta", &theta));
  if (!(theta > 0.0)) return DRL_FAIL(DRL_ERR_FORMAT, "%s: rope_theta = %g must be > 0", r->name, theta);
  m->rope_theta = (float)theta;
  const json_t *s = json_is_object(scaling) ? scaling : json_is_object(params) ? params : NULL;
  memset(&m->rope_scaling, 0, sizeof m->rope_scaling);
  if (!s) return DRL_OK;
  const char *where = s == scaling ? "rope_scaling" : "rope_parameters";
  const json_t *t = json_object_get(s, "rope_type");
  if (!t) t = json_object_get(s, "type");
  if (!t || json_is_null(t)) return s == params ? DRL_OK : DRL_FAIL(DRL_ERR_FORMAT, "%s: %s has no rope_type", r->name, where);
  if (!json_is_string(t)) return wrong_type(r, "rope_type", "a string");
  const char *type = json_string_value(t);
  if (strcmp(type, "default") == 0) return DRL_OK;
  double factor = 0, low = 1, high = 4;
  int orig = 0;
  DRL_TRY(get_num(r, s, "factor", &factor));
  if (!(factor > 0)) return DRL_FAIL(DRL_ERR_FORMAT, "%s: %s.factor = %g must be > 0", r->name, where, factor);
  m->rope_scaling.factor = (float)factor;
  if (strcmp(type, "linear") == 0) {
    m->rope_scaling.type = DRL_ROPE_SCALING_LINEAR;
    return DRL_OK;
  }
  if (strcmp(type, "llama3") != 0) {
    char key[64];
    snprintf(key, sizeof key, "%s.rope_type", where);
    return unsupported(r, key, type, "dynrl implements RoPE scaling of type default, linear and llama3");
  }
  DRL_TRY(get_num(r, s, "low_freq_factor", &low));
  DRL_TRY(get_num(r, s, "high_freq_factor", &high));
  DRL_TRY(get_int(r, s, "original_max_position_embeddings", &orig, 1));
  if (!(high > low) || !(low > 0) || orig < 1)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: llama3 RoPE scaling needs high_freq_factor > low_freq_factor > 0 and "
                    "original_max_position_embeddings >= 1 (got %g, %g, %d)", r->name, high, low, orig);
  m->rope_scaling.type = DRL_ROPE_SCALING_LLAMA3;
  m->rope_scaling.low_freq_factor = (float)low;
  m->rope_scaling.high_freq_factor = (float)high;
  m->rope_scaling.original_max_pos = orig;
  return DRL_OK;
}

/* Features dynrl does not implement, each named with its value. */
static drl_status refuse_unsupported(const reader *r, const drl_hf_config *c) {
  char act[32] = "silu";
  DRL_TRY(get_str(r, r->root, "hidden_act", act, sizeof act));
  if (strcmp(act, "silu") != 0) return unsupported(r, "hidden_act", act, "dynrl's MLP is SwiGLU (silu)");
  int flag = 0;
  DRL_TRY(get_bool(r, r->root, "use_sliding_window", &flag));
  if (flag) return unsupported(r, "use_sliding_window", "true", "dynrl attends to every earlier position");
  const json_t *sw = json_object_get(r->root, "sliding_window");
  /* Qwen2/3 keep a sliding_window size next to use_sliding_window = false; Mistral's is live whenever it is set. */
  if (strcmp(c->model_type, "mistral") == 0 && sw && !json_is_null(sw)) {
    char v[32];
    snprintf(v, sizeof v, "%lld", json_is_integer(sw) ? (long long)json_integer_value(sw) : -1LL);
    return unsupported(r, "sliding_window", v, "dynrl attends to every earlier position");
  }
  const json_t *types = json_object_get(r->root, "layer_types");
  if (types && json_is_array(types)) {
    size_t i;
    const json_t *e;
    json_array_foreach(types, i, e) if (!json_is_string(e) || strcmp(json_string_value(e), "full_attention") != 0) {
      char key[48];
      snprintf(key, sizeof key, "layer_types[%zu]", i);
      return unsupported(r, key, json_is_string(e) ? json_string_value(e) : "(not a string)",
                         "dynrl attends to every earlier position");
    }
  }
  flag = 0;
  DRL_TRY(get_bool(r, r->root, "mlp_bias", &flag));
  if (flag) return unsupported(r, "mlp_bias", "true", "dynrl's MLP projections have no biases");
  flag = 0;
  DRL_TRY(get_bool(r, r->root, "attention_bias", &flag));
  /* Llama's and Qwen3's attention_bias also gives o_proj a bias; Qwen2's q/k/v biases are fixed by its class. */
  if (flag && strcmp(c->model_type, "qwen2") != 0)
    return unsupported(r, "attention_bias", "true", "dynrl implements q/k/v biases (Qwen2) but no o_proj bias");
  if (json_object_get(r->root, "quantization_config"))
    return unsupported(r, "quantization_config", "(present)", "dynrl loads unquantized F32, BF16 or F16 weights");
  return DRL_OK;
}

drl_status drl_hf_config_parse(const char *name, const char *text, size_t len, drl_hf_config *c) {
  memset(c, 0, sizeof *c);
  json_error_t jerr;
  reader r = {name, json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr)};
  if (!r.root)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", name, jerr.text, jerr.line,
                    jerr.column);
  drl_status st = DRL_OK;
  drl_transformer_config *m = &c->model;
  if (!json_is_object(r.root)) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s: not a JSON object", name);
    goto done;
  }
  DRL_TRY_GOTO(get_str(&r, r.root, "model_type", c->model_type, sizeof c->model_type));
  static const char *const types[][2] = {{"llama", "LlamaForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"},
                                         {"qwen3", "Qwen3ForCausalLM"}, {"mistral", "MistralForCausalLM"}};
  int known = -1;
  for (int i = 0; i < 4; ++i)
    if (strcmp(c->model_type, types[i][0]) == 0) known = i;
  if (known < 0) {
    st = unsupported(&r, "model_type", c->model_type[0] ? c->model_type : "(missing)",
                     "dynrl loads llama, qwen2, qwen3 and mistral");
    goto done;
  }
  snprintf(c->architecture, sizeof c->architecture, "%s", types[known][1]);
  const json_t *arch = json_object_get(r.root, "architectures");
  if (arch && json_is_array(arch) && json_array_size(arch) > 0) {
    const json_t *a0 = json_array_get(arch, 0);
    if (!json_is_string(a0) || strcmp(json_string_value(a0), types[known][1]) != 0) {
      st = unsupported(&r, "architectures[0]", json_is_string(a0) ? json_string_value(a0) : "(not a string)",
                       "dynrl implements the causal LM of this model_type only");
      goto done;
    }
  }
  DRL_TRY_GOTO(refuse_unsupported(&r, c));
  DRL_TRY_GOTO(get_int(&r, r.root, "vocab_size", &m->vocab, 1));
  DRL_TRY_GOTO(get_int(&r, r.root, "hidden_size", &m->d_model, 1));
  DRL_TRY_GOTO(get_int(&r, r.root, "intermediate_size", &m->d_ff, 1));
  DRL_TRY_GOTO(get_int(&r, r.root, "num_hidden_layers", &m->n_layers, 1));
  DRL_TRY_GOTO(get_int(&r, r.root, "num_attention_heads", &m->n_heads, 1));
  m->n_kv_heads = m->n_heads;
  DRL_TRY_GOTO(get_int(&r, r.root, "num_key_value_heads", &m->n_kv_heads, 0));
  c->max_position_embeddings = 2048;
  DRL_TRY_GOTO(get_int(&r, r.root, "max_position_embeddings", &c->max_position_embeddings, 0));
  m->max_seq = c->max_position_embeddings;
  int head_dim = 0;
  DRL_TRY_GOTO(get_int(&r, r.root, "head_dim", &head_dim, 0));
  m->head_dim = m->n_heads > 0 && head_dim * m->n_heads == m->d_model ? 0 : head_dim;
  double eps = 1e-6, init = 0.02;
  DRL_TRY_GOTO(get_num(&r, r.root, "rms_norm_eps", &eps));
  DRL_TRY_GOTO(get_num(&r, r.root, "initializer_range", &init));
  m->norm_eps = (float)eps;
  m->init_std = (float)init;
  DRL_TRY_GOTO(get_bool(&r, r.root, "tie_word_embeddings", &m->tied_embeddings));
  m->qkv_bias = strcmp(c->model_type, "qwen2") == 0;
  m->qk_norm = strcmp(c->model_type, "qwen3") == 0;
  DRL_TRY_GOTO(parse_rope(&r, m));
  c->bos_token_id = -1;
  DRL_TRY_GOTO(get_int(&r, r.root, "bos_token_id", &c->bos_token_id, 0));
  DRL_TRY_GOTO(parse_eos(&r, c));
  DRL_TRY_GOTO(get_str(&r, r.root, "torch_dtype", c->torch_dtype, sizeof c->torch_dtype));
  if (!c->torch_dtype[0]) DRL_TRY_GOTO(get_str(&r, r.root, "dtype", c->torch_dtype, sizeof c->torch_dtype));
  st = drl_transformer_config_check(m);
  if (st != DRL_OK) drl_fail_context(st, "%s", name);
done:
  json_decref(r.root);
  return st;
}

void drl_hf_config_from_model(const drl_transformer_config *model, drl_hf_config *c) {
  memset(c, 0, sizeof *c);
  c->model = *model;
  snprintf(c->model_type, sizeof c->model_type, "llama");
  snprintf(c->architecture, sizeof c->architecture, "LlamaForCausalLM");
  c->bos_token_id = -1;
  c->max_position_embeddings = model->max_seq;
}

/* The shortest decimal that reads back as f, as a double: 1e-05 is written "1e-05", not "9.99999975e-06". */
static double decimal(float f) {
  char buf[32];
  for (int p = 6; p < 9; ++p) {
    snprintf(buf, sizeof buf, "%.*g", p, (double)f);
    if ((float)strtod(buf, NULL) == f) return strtod(buf, NULL);
  }
  snprintf(buf, sizeof buf, "%.9g", (double)f);
  return strtod(buf, NULL);
}

drl_status drl_hf_config_to_json(const drl_hf_config *c, char **json) {
  const drl_transformer_config *m = &c->model;
  int head_dim = m->head_dim ? m->head_dim : m->d_model / m->n_heads;
  json_t *root = json_pack("{s[s]ss sisisisisisisi sssf sf sbsf}", "architectures", c->architecture, "model_type",
                           c->model_type, "vocab_size", m->vocab, "hidden_size", m->d_model, "intermediate_size",
                           m->d_ff, "num_hidden_layers", m->n_layers, "num_attention_heads", m->n_heads,
                           "num_key_value_heads", m->n_kv_heads, "head_dim", head_dim, "hidden_act", "silu",
                           "rms_norm_eps", decimal(m->norm_eps), "rope_theta", decimal(m->rope_theta),
                           "tie_word_embeddings", m->tied_embeddings, "initializer_range", decimal(m->init_std));
  if (!root) return DRL_FAIL(DRL_ERR_OOM, "config.json: out of memory");
  int bad = json_object_set_new(root, "max_position_embeddings", json_integer(c->max_position_embeddings));
  if (strcmp(c->model_type, "qwen2") != 0) bad |= json_object_set_new(root, "attention_bias", json_false());
  if (strcmp(c->model_type, "llama") == 0) bad |= json_object_set_new(root, "mlp_bias", json_false());
  if (strcmp(c->model_type, "qwen2") == 0 || strcmp(c->model_type, "qwen3") == 0)
    bad |= json_object_set_new(root, "use_sliding_window", json_false());
  const drl_rope_scaling *s = &m->rope_scaling;
  json_t *scaling = json_null();
  if (s->type == DRL_ROPE_SCALING_LINEAR)
    scaling = json_pack("{sssf}", "rope_type", "linear", "factor", decimal(s->factor));
  else if (s->type == DRL_ROPE_SCALING_LLAMA3)
    scaling = json_pack("{sssfsfsfsi}", "rope_type", "llama3", "factor", decimal(s->factor), "low_freq_factor",
                        decimal(s->low_freq_factor), "high_freq_factor", decimal(s->high_freq_factor),
                        "original_max_position_embeddings", s->original_max_pos);
  bad |= json_object_set_new(root, "rope_scaling", scaling);
  if (c->bos_token_id >= 0) bad |= json_object_set_new(root, "bos_token_id", json_integer(c->bos_token_id));
  if (c->n_eos == 1) bad |= json_object_set_new(root, "eos_token_id", json_integer(c->eos_token_ids[0]));
  if (c->n_eos > 1) {
    json_t *ids = json_array();
    for (int i = 0; i < c->n_eos; ++i) bad |= json_array_append_new(ids, json_integer(c->eos_token_ids[i]));
    bad |= json_object_set_new(root, "eos_token_id", ids);
  }
  bad |= json_object_set_new(root, "torch_dtype", json_string(c->torch_dtype[0] ? c->torch_dtype : "float32"));
  *json = bad ? NULL : json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
  json_decref(root);
  if (!*json) return DRL_FAIL(DRL_ERR_OOM, "config.json: out of memory");
  return DRL_OK;
}
