/* Loading a byte-level BPE tokenizer.json (bpe.h) and its tokenizer-interface operations. Every part of the file
 * is checked against what dynrl implements exactly; the rest is refused by name (file, JSON path, value). */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "bpe.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_internal.h"
#include "byte_level.h"
#include "file_read.h"
#include "utf8.h"

/* ---- messages ---- */

static drl_status bad(const drl_bpe *b, const char *path, const char *fmt, ...) DRL_PRINTF(3, 4);
static drl_status bad(const drl_bpe *b, const char *path, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return DRL_FAIL(DRL_ERR_FORMAT, "%s: %s: %s", b->file, path, msg);
}

/* A JSON value shown in a message: strings quoted and cut at 60 bytes, others by kind. */
static const char *show(const json_t *v, char buf[96]) {
  if (!v) return "missing";
  if (json_is_string(v)) {
    snprintf(buf, 96, "\"%.60s\"%s", json_string_value(v), json_string_length(v) > 60 ? "..." : "");
    return buf;
  }
  if (json_is_null(v)) return "null";
  if (json_is_true(v)) return "true";
  if (json_is_false(v)) return "false";
  if (json_is_integer(v)) {
    snprintf(buf, 96, "%lld", (long long)json_integer_value(v));
    return buf;
  }
  return json_is_object(v) ? "an object" : json_is_array(v) ? "an array" : "a number";
}

/* A "type" member that is a string, or NULL after recording the error. */
static const char *type_of(const drl_bpe *b, const json_t *obj, const char *path, drl_status *st) {
  char p[160], s[96];
  snprintf(p, sizeof p, "%s.type", path);
  if (!json_is_object(obj)) {
    *st = bad(b, path, "expected an object, found %s", show(obj, s));
    return NULL;
  }
  const json_t *t = json_object_get(obj, "type");
  if (!json_is_string(t)) {
    *st = bad(b, p, "expected a string, found %s", show(t, s));
    return NULL;
  }
  return json_string_value(t);
}

/* OK when obj.key is absent or one of the allowed values: null, false, or the empty string. */
static drl_status absent_or_off(const drl_bpe *b, const json_t *obj, const char *path, const char *key,
                                const char *why) {
  const json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v) || json_is_false(v) || (json_is_string(v) && json_string_length(v) == 0))
    return DRL_OK;
  char p[160], s[96];
  snprintf(p, sizeof p, "%s.%s", path, key);
  return bad(b, p, "%s is not supported (%s)", show(v, s), why);
}

/* obj.key as a boolean (def when absent). */
static drl_status get_bool(const drl_bpe *b, const json_t *obj, const char *path, const char *key, int def,
                           int *out) {
  const json_t *v = json_object_get(obj, key);
  if (!v) {
    *out = def;
    return DRL_OK;
  }
  if (!json_is_boolean(v)) {
    char p[160], s[96];
    snprintf(p, sizeof p, "%s.%s", path, key);
    return bad(b, p, "expected true or false, found %s", show(v, s));
  }
  *out = json_is_true(v);
  return DRL_OK;
}

/* ---- the model ---- */

static drl_status check_id(const drl_bpe *b, const char *path, const json_t *v, int32_t *id) {
  char s[96];
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= DRL_BPE_MAX_VOCAB)
    return bad(b, path, "expected a token id in 0..%d, found %s", DRL_BPE_MAX_VOCAB - 1, show(v, s));
  *id = (int32_t)json_integer_value(v);
  return DRL_OK;
}

static drl_status read_model_header(drl_bpe *b, const json_t *model) {
  drl_status st = DRL_OK;
  char s[96];
  const char *type = type_of(b, model, "model", &st);
  if (!type) return st;
  if (strcmp(type, "BPE") != 0)
    return bad(b, "model.type", "\"%.40s\" is not supported (dynrl reads byte-level BPE)", type);
  DRL_TRY(absent_or_off(b, model, "model", "dropout", "BPE dropout is for training"));
  DRL_TRY(absent_or_off(b, model, "model", "byte_fallback", "byte-level BPE needs no byte fallback"));
  DRL_TRY(absent_or_off(b, model, "model", "continuing_subword_prefix", "byte-level BPE has none"));
  DRL_TRY(absent_or_off(b, model, "model", "end_of_word_suffix", "byte-level BPE has none"));
  DRL_TRY(get_bool(b, model, "model", "ignore_merges", 0, &b->ignore_merges));
  const json_t *unk = json_object_get(model, "unk_token");
  if (unk && !json_is_null(unk) && !json_is_string(unk))
    return bad(b, "model.unk_token", "expected a string or null, found %s", show(unk, s));
  return DRL_OK;
}

/* Fills the vocabulary map; ids[id] gets each token's text (borrowed from the JSON). */
static drl_status read_vocab(drl_bpe *b, const json_t *vocab, const char **text, size_t *text_len) {
  char s[96], p[160];
  if (!json_is_object(vocab)) return bad(b, "model.vocab", "expected an object, found %s", show(vocab, s));
  DRL_TRY(drl_str_map_init(&b->vocab, (int64_t)json_object_size(vocab)));
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)vocab, key, v) {
    int32_t id = -1, old;
    snprintf(p, sizeof p, "model.vocab[\"%.60s\"]", key);
    DRL_TRY(check_id(b, p, v, &id));
    if (text[id])
      return bad(b, p, "id %d is also the id of \"%.60s\"", (int)id, text[id]);
    size_t len = strlen(key);
    DRL_TRY(drl_str_map_put(&b->vocab, key, len, id, &old));
    text[id] = key, text_len[id] = len;
  }
  return DRL_OK;
}

/* The token id of a merge side, or an error naming the merge. */
static drl_status merge_side(const drl_bpe *b, const char *path, const char *tok, size_t len, int32_t *id) {
  *id = drl_str_map_get(&b->vocab, tok, len);
  if (*id < 0) return bad(b, path, "\"%.60s\" is not in model.vocab", tok);
  return DRL_OK;
}

static drl_status read_merges(drl_bpe *b, const json_t *merges) {
  char s[96], p[96];
  if (!json_is_array(merges)) return bad(b, "model.merges", "expected an array, found %s", show(merges, s));
  size_t n = json_array_size(merges);
  DRL_TRY(drl_bpe_merges_init(&b->merges, (int64_t)n));
  char *joined = NULL;
  size_t joined_cap = 0;
  drl_status st = DRL_OK;
  int32_t rank = 0;
  for (size_t i = 0; i < n && st == DRL_OK; ++i) {
    const json_t *m = json_array_get(merges, i);
    snprintf(p, sizeof p, "model.merges[%zu]", i);
    const char *l, *r;
    size_t ll, rl;
    if (json_is_string(m)) { /* "a b": the hub's form */
      const char *t = json_string_value(m);
      size_t tl = json_string_length(m);
      if (tl >= 8 && strncmp(t, "#version", 8) == 0) continue;
      const char *sp = memchr(t, ' ', tl);
      if (!sp || memchr(sp + 1, ' ', tl - (size_t)(sp + 1 - t))) {
        st = bad(b, p, "%s is not two tokens separated by one space", show(m, s));
        break;
      }
      l = t, ll = (size_t)(sp - t), r = sp + 1, rl = tl - ll - 1;
    } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
               json_is_string(json_array_get(m, 1))) { /* ["a", "b"]: tokenizers >= 0.20 */
      l = json_string_value(json_array_get(m, 0)), ll = json_string_length(json_array_get(m, 0));
      r = json_string_value(json_array_get(m, 1)), rl = json_string_length(json_array_get(m, 1));
    } else {
      st = bad(b, p, "expected \"a b\" or [\"a\", \"b\"], found %s", show(m, s));
      break;
    }
    int32_t a, c, merged;
    if ((st = merge_side(b, p, l, ll, &a)) != DRL_OK || (st = merge_side(b, p, r, rl, &c)) != DRL_OK) break;
    if (ll + rl + 1 > joined_cap) {
      joined_cap = 2 * (ll + rl + 1);
      char *j = (char *)realloc(joined, joined_cap);
      if (!j) {
        st = DRL_FAIL(DRL_ERR_OOM, "%s: out of memory reading the merges", b->file);
        break;
      }
      joined = j;
    }
    memcpy(joined, l, ll);
    memcpy(joined + ll, r, rl);
    merged = drl_str_map_get(&b->vocab, joined, ll + rl);
    if (merged < 0) {
      joined[ll + rl] = '\0';
      st = bad(b, p, "the merged token \"%.60s\" is not in model.vocab", joined);
      break;
    }
    drl_bpe_merges_put(&b->merges, a, c, rank++, merged);
  }
  free(joined);
  return st;
}

/* ---- added tokens ---- */

static drl_status read_added(drl_bpe *b, const json_t *added, const json_t **content) {
  char s[96], p[96];
  if (!added || json_is_null(added)) return DRL_OK;
  if (!json_is_array(added)) return bad(b, "added_tokens", "expected an array, found %s", show(added, s));
  size_t n = json_array_size(added);
  if (n > DRL_BPE_MAX_VOCAB) return bad(b, "added_tokens", "%zu tokens (at most %d)", n, DRL_BPE_MAX_VOCAB);
  b->added = (drl_bpe_added *)calloc(n ? n : 1, sizeof *b->added);
  if (!b->added) return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for %zu added tokens", b->file, n);
  DRL_TRY(drl_str_map_init(&b->added_ids, (int64_t)n));
  for (size_t i = 0; i < n; ++i) {
    const json_t *t = json_array_get(added, i);
    snprintf(p, sizeof p, "added_tokens[%zu]", i);
    if (!json_is_object(t)) return bad(b, p, "expected an object, found %s", show(t, s));
    drl_bpe_added *a = &b->added[b->n_added];
    char q[128];
    snprintf(q, sizeof q, "%s.id", p);
    DRL_TRY(check_id(b, q, json_object_get(t, "id"), &a->id));
    const json_t *c = json_object_get(t, "content");
    if (!json_is_string(c) || json_string_length(c) == 0) {
      snprintf(q, sizeof q, "%s.content", p);
      return bad(b, q, "expected a non-empty string, found %s", show(c, s));
    }
    DRL_TRY(get_bool(b, t, p, "special", 0, &a->special));
    DRL_TRY(get_bool(b, t, p, "normalized", 0, &a->normalized));
    DRL_TRY(absent_or_off(b, t, p, "lstrip", "dynrl matches added tokens exactly"));
    DRL_TRY(absent_or_off(b, t, p, "rstrip", "dynrl matches added tokens exactly"));
    DRL_TRY(absent_or_off(b, t, p, "single_word", "dynrl matches added tokens exactly"));
    int32_t old;
    DRL_TRY(drl_str_map_put(&b->added_ids, json_string_value(c), json_string_length(c), a->id, &old));
    if (old >= 0) {
      snprintf(q, sizeof q, "%s.content", p);
      return bad(b, q, "%s is already added token %d", show(c, s), (int)old);
    }
    content[b->n_added] = c;
    b->n_added++;
  }
  return DRL_OK;
}

/* What each added token matches (normalized ones after NFC, as the text they are matched in) and the indexes. */
static drl_status index_added(drl_bpe *b, const json_t **content) {
  for (int32_t i = 0; i < b->n_added; ++i) {
    drl_bpe_added *a = &b->added[i];
    const char *c = json_string_value(content[i]);
    int64_t len = (int64_t)json_string_length(content[i]);
    char *norm = NULL;
    if (a->normalized && b->nfc) {
      if (drl_utf8_invalid_at((const uint8_t *)c, (size_t)len) != (size_t)len) {
        char p[64];
        snprintf(p, sizeof p, "added_tokens[%d].content", (int)i);
        return bad(b, p, "not valid UTF-8");
      }
      DRL_TRY(drl_bpe_nfc(c, len, &norm, &len));
    }
    if (!norm) {
      norm = (char *)malloc((size_t)len + 1);
      if (!norm) return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for added tokens", b->file);
      memcpy(norm, c, (size_t)len);
    }
    if (len == 0 || len > INT32_MAX) {
      free(norm);
      return bad(b, "added_tokens", "token %d normalizes to nothing", (int)a->id);
    }
    a->match = norm, a->len = (int32_t)len;
  }
  drl_bpe_added_index *ix[2] = {&b->raw, &b->normalized};
  for (int kind = 0; kind < 2; ++kind) {
    drl_bpe_added_index *x = ix[kind];
    int32_t count[257] = {0}, n = 0;
    for (int32_t i = 0; i < b->n_added; ++i)
      if (b->added[i].normalized == kind) count[(unsigned char)b->added[i].match[0] + 1]++, n++;
    if (n == 0) continue;
    for (int c = 0; c < 256; ++c) count[c + 1] += count[c];
    memcpy(x->start, count, sizeof count);
    x->order = (int32_t *)malloc((size_t)n * sizeof *x->order);
    if (!x->order) return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for added tokens", b->file);
    for (int32_t i = 0; i < b->n_added; ++i)
      if (b->added[i].normalized == kind) x->order[count[(unsigned char)b->added[i].match[0]]++] = i;
    /* Longest first within a first byte (insertion sort: few tokens share one). */
    for (int c = 0; c < 256; ++c)
      for (int32_t k = x->start[c] + 1; k < x->start[c + 1]; ++k)
        for (int32_t j = k; j > x->start[c] && b->added[x->order[j]].len > b->added[x->order[j - 1]].len; --j) {
          int32_t t = x->order[j];
          x->order[j] = x->order[j - 1], x->order[j - 1] = t;
        }
  }
  return DRL_OK;
}

/* ---- pipeline parts ---- */

static drl_status read_normalizer(drl_bpe *b, const json_t *n) {
  drl_status st = DRL_OK;
  if (!n || json_is_null(n)) return DRL_OK;
  const char *type = type_of(b, n, "normalizer", &st);
  if (!type) return st;
  if (strcmp(type, "NFC") == 0) {
    b->nfc = 1;
    return DRL_OK;
  }
  if (strcmp(type, "Sequence") == 0) {
    const json_t *list = json_object_get(n, "normalizers");
    char s[96], p[96];
    if (!json_is_array(list))
      return bad(b, "normalizer.normalizers", "expected an array, found %s", show(list, s));
    for (size_t i = 0; i < json_array_size(list); ++i) {
      snprintf(p, sizeof p, "normalizer.normalizers[%zu]", i);
      const char *t = type_of(b, json_array_get(list, i), p, &st);
      if (!t) return st;
      if (strcmp(t, "NFC") != 0)
        return bad(b, p, "type \"%.40s\" is not supported (dynrl supports NFC or no normalizer)", t);
      b->nfc = 1;
    }
    return DRL_OK;
  }
  return bad(b, "normalizer.type", "\"%.40s\" is not supported (dynrl supports NFC or no normalizer)", type);
}

static drl_status add_regex(drl_bpe *b, const char *path, const char *pattern, size_t len) {
  if (b->n_re == DRL_BPE_MAX_REGEX) return bad(b, path, "more than %d regex splits", DRL_BPE_MAX_REGEX);
  drl_status st = drl_pretok_compile(pattern, len, &b->re[b->n_re]);
  if (st != DRL_OK) return drl_fail_context(st, "%s: %s", b->file, path);
  b->n_re++;
  return DRL_OK;
}

/* One pre-tokenizer step; *byte_level is set by the ByteLevel step, which must come last. */
static drl_status read_pretok_step(drl_bpe *b, const json_t *step, const char *path, int *byte_level) {
  drl_status st = DRL_OK;
  char s[96], p[160];
  const char *type = type_of(b, step, path, &st);
  if (!type) return st;
  if (*byte_level) return bad(b, path, "a \"%.40s\" step after ByteLevel is not supported", type);
  if (strcmp(type, "ByteLevel") == 0) {
    int use_regex;
    DRL_TRY(absent_or_off(b, step, path, "add_prefix_space", "dynrl never adds a prefix space"));
    DRL_TRY(get_bool(b, step, path, "use_regex", 1, &use_regex));
    if (use_regex) DRL_TRY(add_regex(b, path, DRL_PRETOK_GPT2, strlen(DRL_PRETOK_GPT2)));
    *byte_level = 1;
    return DRL_OK;
  }
  if (strcmp(type, "Split") == 0) {
    const json_t *pat = json_object_get(step, "pattern"), *beh = json_object_get(step, "behavior");
    const json_t *re = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
    snprintf(p, sizeof p, "%s.pattern", path);
    if (json_is_object(pat) && json_object_get(pat, "String"))
      return bad(b, p, "a String pattern is not supported (dynrl splits on a Regex)");
    if (!json_is_string(re)) return bad(b, p, "expected {\"Regex\": \"...\"}, found %s", show(pat, s));
    snprintf(p, sizeof p, "%s.behavior", path);
    if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") != 0)
      return bad(b, p, "%s is not supported (dynrl splits with \"Isolated\")", show(beh, s));
    DRL_TRY(absent_or_off(b, step, path, "invert", "dynrl splits on the matches"));
    snprintf(p, sizeof p, "%s.pattern.Regex", path);
    return add_regex(b, p, json_string_value(re), json_string_length(re));
  }
  return bad(b, path, "type \"%.40s\" is not supported (dynrl reads Split and ByteLevel pre-tokenizers)", type);
}

static drl_status read_pre_tokenizer(drl_bpe *b, const json_t *pt) {
  drl_status st = DRL_OK;
  int byte_level = 0;
  if (!pt || json_is_null(pt))
    return bad(b, "pre_tokenizer", "null is not supported (byte-level BPE needs a ByteLevel pre-tokenizer)");
  const char *type = type_of(b, pt, "pre_tokenizer", &st);
  if (!type) return st;
  if (strcmp(type, "Sequence") == 0) {
    const json_t *list = json_object_get(pt, "pretokenizers");
    char s[96], p[96];
    if (!json_is_array(list))
      return bad(b, "pre_tokenizer.pretokenizers", "expected an array, found %s", show(list, s));
    for (size_t i = 0; i < json_array_size(list); ++i) {
      snprintf(p, sizeof p, "pre_tokenizer.pretokenizers[%zu]", i);
      DRL_TRY(read_pretok_step(b, json_array_get(list, i), p, &byte_level));
    }
  } else {
    DRL_TRY(read_pretok_step(b, pt, "pre_tokenizer", &byte_level));
  }
  if (!byte_level)
    return bad(b, "pre_tokenizer", "no ByteLevel step (dynrl reads byte-level BPE, whose last step is ByteLevel)");
  return DRL_OK;
}

/* The ids a TemplateProcessing puts before and after the single sequence $A. */
static drl_status read_template(drl_bpe *b, const json_t *tp, const char *path) {
  char s[96], p[192];
  const json_t *single = json_object_get(tp, "single"), *specials = json_object_get(tp, "special_tokens");
  snprintf(p, sizeof p, "%s.single", path);
  if (!json_is_array(single)) return bad(b, p, "expected an array, found %s", show(single, s));
  int seen_a = 0;
  free(b->prefix), free(b->suffix);
  b->prefix = b->suffix = NULL, b->n_prefix = b->n_suffix = 0;
  for (size_t i = 0; i < json_array_size(single); ++i) {
    const json_t *item = json_array_get(single, i), *sp = json_object_get(item, "SpecialToken"),
                 *seq = json_object_get(item, "Sequence");
    snprintf(p, sizeof p, "%s.single[%zu]", path, i);
    if (json_is_object(seq)) {
      const json_t *id = json_object_get(seq, "id");
      if (!json_is_string(id) || strcmp(json_string_value(id), "A") != 0 || seen_a)
        return bad(b, p, "expected the sequence \"A\" once, found %s", show(id, s));
      seen_a = 1;
      continue;
    }
    const json_t *name = json_is_object(sp) ? json_object_get(sp, "id") : NULL;
    if (!json_is_string(name)) return bad(b, p, "expected a SpecialToken or a Sequence item");
    const json_t *entry = json_is_object(specials) ? json_object_get(specials, json_string_value(name)) : NULL;
    const json_t *ids = json_is_object(entry) ? json_object_get(entry, "ids") : NULL;
    if (!json_is_array(ids))
      return bad(b, p, "special token %s has no \"ids\" in %s.special_tokens", show(name, s), path);
    for (size_t k = 0; k < json_array_size(ids); ++k) {
      int32_t id = -1;
      DRL_TRY(check_id(b, p, json_array_get(ids, k), &id));
      int32_t **list = seen_a ? &b->suffix : &b->prefix, *n = seen_a ? &b->n_suffix : &b->n_prefix;
      int32_t *grown = (int32_t *)realloc(*list, (size_t)(*n + 1) * sizeof *grown);
      if (!grown) return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory", b->file);
      grown[(*n)++] = id;
      *list = grown;
    }
  }
  snprintf(p, sizeof p, "%s.single", path);
  if (!seen_a) return bad(b, p, "has no sequence \"A\"");
  return DRL_OK;
}

static drl_status read_post_step(drl_bpe *b, const json_t *step, const char *path, int *templates) {
  drl_status st = DRL_OK;
  const char *type = type_of(b, step, path, &st);
  if (!type) return st;
  if (strcmp(type, "ByteLevel") == 0) return DRL_OK; /* it only trims offsets, which dynrl does not produce */
  if (strcmp(type, "TemplateProcessing") == 0) {
    if ((*templates)++) return bad(b, path, "a second TemplateProcessing is not supported");
    return read_template(b, step, path);
  }
  return bad(b, path, "type \"%.40s\" is not supported (dynrl reads TemplateProcessing and ByteLevel)", type);
}

static drl_status read_post_processor(drl_bpe *b, const json_t *pp) {
  drl_status st = DRL_OK;
  int templates = 0;
  if (!pp || json_is_null(pp)) return DRL_OK;
  const char *type = type_of(b, pp, "post_processor", &st);
  if (!type) return st;
  if (strcmp(type, "Sequence") != 0) return read_post_step(b, pp, "post_processor", &templates);
  const json_t *list = json_object_get(pp, "processors");
  char s[96], p[96];
  if (!json_is_array(list)) return bad(b, "post_processor.processors", "expected an array, found %s", show(list, s));
  for (size_t i = 0; i < json_array_size(list); ++i) {
    snprintf(p, sizeof p, "post_processor.processors[%zu]", i);
    DRL_TRY(read_post_step(b, json_array_get(list, i), p, &templates));
  }
  return DRL_OK;
}

static drl_status read_decoder(drl_bpe *b, const json_t *d) {
  drl_status st = DRL_OK;
  if (!d || json_is_null(d))
    return bad(b, "decoder", "null is not supported (byte-level BPE needs the ByteLevel decoder)");
  const char *type = type_of(b, d, "decoder", &st);
  if (!type) return st;
  if (strcmp(type, "ByteLevel") != 0)
    return bad(b, "decoder.type", "\"%.40s\" is not supported (dynrl decodes with ByteLevel)", type);
  return DRL_OK;
}

/* ---- decoding tables ---- */

/* The ByteLevel decoder's bytes for a token: its characters mapped back to bytes, or, when one of them is outside
 * the alphabet, its own UTF-8. */
static drl_status token_bytes_of(const char *text, size_t len, uint8_t *out, size_t *n) {
  size_t k = 0;
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    int w = drl_utf8_char((const uint8_t *)text + i, len - i, &cp);
    int byte = w ? drl_byte_level_byte(cp) : -1;
    if (byte < 0) {
      memcpy(out, text, len);
      *n = len;
      return DRL_OK;
    }
    out[k++] = (uint8_t)byte;
    i += (size_t)w;
  }
  *n = k;
  return DRL_OK;
}

static drl_status build_tables(drl_bpe *b, const char **text, size_t *text_len, const json_t **content) {
  /* Added tokens take their id over a vocabulary entry (tokenizers looks added tokens up first). */
  for (int32_t i = 0; i < b->n_added; ++i) {
    text[b->added[i].id] = json_string_value(content[i]);
    text_len[b->added[i].id] = json_string_length(content[i]);
  }
  size_t total = 0;
  for (int32_t id = 0; id < b->vocab_size; ++id) total += text[id] ? text_len[id] : 0;
  b->bytes = (uint8_t *)malloc(total ? total : 1);
  b->off = (int64_t *)malloc(((size_t)b->vocab_size + 1) * sizeof *b->off);
  b->flags = (uint8_t *)calloc((size_t)b->vocab_size, 1);
  if (!b->bytes || !b->off || !b->flags)
    return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for %d tokens", b->file, (int)b->vocab_size);
  size_t at = 0;
  for (int32_t id = 0; id < b->vocab_size; ++id) {
    b->off[id] = (int64_t)at;
    if (!text[id]) continue;
    size_t n;
    DRL_TRY(token_bytes_of(text[id], text_len[id], b->bytes + at, &n));
    at += n;
    b->flags[id] = BPE_TOKEN_PRESENT;
  }
  b->off[b->vocab_size] = (int64_t)at;
  for (int32_t i = 0; i < b->n_added; ++i)
    b->flags[b->added[i].id] |= DRL_TOKEN_ADDED | (b->added[i].special ? DRL_TOKEN_SPECIAL : 0);
  for (int32_t i = 0; i < b->n_prefix + b->n_suffix; ++i) {
    int32_t id = i < b->n_prefix ? b->prefix[i] : b->suffix[i - b->n_prefix];
    if (id >= b->vocab_size || !(b->flags[id] & BPE_TOKEN_PRESENT))
      return bad(b, "post_processor", "token id %d has no token", (int)id);
  }
  /* Every byte must have a token: a piece starts as its bytes. */
  for (int c = 0; c < 256; ++c) {
    uint8_t u[4];
    int w = drl_utf8_put(drl_byte_level_cp((uint8_t)c), u);
    b->byte_id[c] = drl_str_map_get(&b->vocab, u, (size_t)w);
    if (b->byte_id[c] < 0)
      return bad(b, "model.vocab", "byte 0x%02X (ByteLevel character \"%.*s\") has no token", c, w, (const char *)u);
  }
  return DRL_OK;
}

/* ---- the interface ---- */

static void bpe_free(void *impl) {
  drl_bpe *b = (drl_bpe *)impl;
  if (!b) return;
  free(b->file);
  drl_str_map_free(&b->vocab);
  drl_str_map_free(&b->added_ids);
  drl_bpe_merges_free(&b->merges);
  for (int32_t i = 0; i < b->n_added; ++i) free(b->added[i].match);
  free(b->added);
  free(b->raw.order), free(b->normalized.order);
  for (int i = 0; i < b->n_re; ++i) drl_pretok_free(&b->re[i]);
  free(b->prefix), free(b->suffix);
  free(b->bytes), free(b->off), free(b->flags);
  drl_str_map_free(&b->cache);
  drl_ids_free(&b->cache_ids);
  drl_spans_free(&b->spans[0]), drl_spans_free(&b->spans[1]);
  drl_bpe_work_free(&b->work);
  drl_ids_free(&b->initial);
  drl_text_free(&b->level);
  free(b);
}

static int32_t bpe_vocab_size(const void *impl) { return ((const drl_bpe *)impl)->vocab_size; }

static int32_t bpe_token_id(const void *impl, const char *token, size_t len) {
  const drl_bpe *b = (const drl_bpe *)impl;
  int32_t id = drl_str_map_get(&b->added_ids, token, len);
  return id >= 0 ? id : drl_str_map_get(&b->vocab, token, len);
}

static drl_status bpe_token_bytes(const void *impl, int32_t id, const uint8_t **bytes, int64_t *len, int *flags) {
  const drl_bpe *b = (const drl_bpe *)impl;
  if (id < 0 || id >= b->vocab_size || !(b->flags[id] & BPE_TOKEN_PRESENT))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "id %d has no token in %s (vocabulary size %d)", (int)id, b->file,
                    (int)b->vocab_size);
  *bytes = b->bytes + b->off[id];
  *len = b->off[id + 1] - b->off[id];
  *flags = b->flags[id] & (DRL_TOKEN_ADDED | DRL_TOKEN_SPECIAL);
  return DRL_OK;
}

static const drl_tokenizer_ops kBpeOps = {"bpe", bpe_vocab_size, bpe_token_id, bpe_token_bytes, drl_bpe_encode,
                                          bpe_free};

/* ---- loading ---- */

static drl_status load(drl_bpe *b, const json_t *root) {
  char s[96];
  if (!json_is_object(root)) return bad(b, "(root)", "expected an object, found %s", show(root, s));
  const json_t *model = json_object_get(root, "model");
  DRL_TRY(read_model_header(b, model));
  const json_t *trunc = json_object_get(root, "truncation");
  if (trunc && !json_is_null(trunc)) return bad(b, "truncation", "%s is not supported (dynrl never truncates)", show(trunc, s));
  const json_t *vocab = json_object_get(model, "vocab"), *added = json_object_get(root, "added_tokens");
  /* The vocabulary size: the largest id of the vocabulary and the added tokens, plus one. */
  int32_t max_id = -1;
  if (json_is_object(vocab)) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
      if (json_is_integer(v) && json_integer_value(v) > max_id && json_integer_value(v) < DRL_BPE_MAX_VOCAB)
        max_id = (int32_t)json_integer_value(v);
    }
  }
  for (size_t i = 0; json_is_array(added) && i < json_array_size(added); ++i) {
    const json_t *id = json_object_get(json_array_get(added, i), "id");
    if (json_is_integer(id) && json_integer_value(id) > max_id && json_integer_value(id) < DRL_BPE_MAX_VOCAB)
      max_id = (int32_t)json_integer_value(id);
  }
  b->vocab_size = max_id + 1;
  size_t n_added = json_is_array(added) ? json_array_size(added) : 0;
  const char **text = (const char **)calloc((size_t)b->vocab_size + 1, sizeof *text);
  size_t *text_len = (size_t *)calloc((size_t)b->vocab_size + 1, sizeof *text_len);
  const json_t **content = (const json_t **)calloc(n_added + 1, sizeof *content);
  drl_status st = DRL_OK;
  if (!text || !text_len || !content) st = DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for the vocabulary", b->file);
  if (st == DRL_OK) st = read_vocab(b, vocab, text, text_len);
  if (st == DRL_OK) st = read_merges(b, json_object_get(model, "merges"));
  if (st == DRL_OK) st = read_added(b, added, content);
  if (st == DRL_OK) st = read_normalizer(b, json_object_get(root, "normalizer"));
  if (st == DRL_OK) st = index_added(b, content);
  if (st == DRL_OK) st = read_pre_tokenizer(b, json_object_get(root, "pre_tokenizer"));
  if (st == DRL_OK) st = read_post_processor(b, json_object_get(root, "post_processor"));
  if (st == DRL_OK) st = read_decoder(b, json_object_get(root, "decoder"));
  if (st == DRL_OK) st = build_tables(b, text, text_len, content);
  if (st == DRL_OK) st = drl_str_map_init(&b->cache, 1024);
  free(text), free(text_len), free(content);
  return st;
}

drl_status drl_bpe_load_json(const char *name, const char *json, size_t len, drl_tokenizer *out) {
  if (!out || !name || (!json && len > 0))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "tokenizer.json: name, text and output must be non-NULL");
  memset(out, 0, sizeof *out);
  drl_bpe *b = (drl_bpe *)calloc(1, sizeof *b);
  if (!b || !(b->file = strdup(name))) {
    free(b);
    return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory", name);
  }
  json_error_t err;
  json_t *root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
  drl_status st;
  if (!root)
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s: line %d column %d: not valid JSON: %s", name, err.line, err.column, err.text);
  else
    st = load(b, root);
  json_decref(root);
  if (st != DRL_OK) {
    bpe_free(b);
    return st;
  }
  out->ops = &kBpeOps;
  out->impl = b;
  return DRL_OK;
}

drl_status drl_bpe_load_hashed(const char *path, drl_tokenizer *out, char hash[17]) {
  if (!path || !out) return DRL_FAIL(DRL_ERR_INVALID_ARG, "tokenizer.json: path and output must be non-NULL");
  char *buf = NULL;
  size_t n = 0;
  DRL_TRY(drl_read_file(path, (size_t)1 << 30, &buf, &n));
  if (hash) drl_fnv1a64_hex(buf, n, hash);
  drl_status st = drl_bpe_load_json(path, buf, n, out);
  free(buf);
  return st;
}

drl_status drl_bpe_load(const char *path, drl_tokenizer *out) { return drl_bpe_load_hashed(path, out, NULL); }
