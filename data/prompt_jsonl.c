/* JSONL prompt sets (prompt_jsonl.h). */
#define _POSIX_C_SOURCE 200809L
#include "prompt_jsonl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file_read.h"

/* Files larger than this are refused before they are read whole. */
#define MAX_FILE_BYTES ((size_t)4 << 30)

void drl_prompt_set_free(drl_prompt_set *set) {
  if (!set) return;
  for (int64_t i = 0; i < set->n; ++i) {
    drl_prompt_record *r = &set->records[i];
    free(r->prompt);
    free(r->system);
    free(r->answer);
    free(r->prompt_ids);
    for (int m = 0; m < r->n_messages; ++m) {
      free(r->messages[m].role);
      free(r->messages[m].content);
    }
    free(r->messages);
  }
  free(set->records);
  memset(set, 0, sizeof *set);
}

/* The 1-based column of key's first appearance as "key" in the line (1 when it is not written literally). */
static int key_column(const char *line, size_t len, const char *key) {
  char quoted[64];
  int n = snprintf(quoted, sizeof quoted, "\"%s\"", key);
  for (size_t i = 0; n > 0 && i + (size_t)n <= len; ++i)
    if (memcmp(line + i, quoted, (size_t)n) == 0) return (int)i + 1;
  return 1;
}

typedef struct line_ctx {
  const char *name, *text;
  size_t len;
  int64_t line;
} line_ctx;

static drl_status bad_key(const line_ctx *l, const char *key, const char *what) {
  return DRL_FAIL(DRL_ERR_FORMAT, "%s:%lld:%d: \"%s\" %s", l->name, (long long)l->line,
                  key_column(l->text, l->len, key), key, what);
}

static drl_status dup_string(const line_ctx *l, const json_t *v, const char *key, char **out) {
  if (json_is_string(v)) {
    *out = strdup(json_string_value(v));
  } else if (json_is_integer(v) || json_is_real(v)) {
    *out = json_dumps(v, JSON_ENCODE_ANY); /* a numeric answer: its JSON text */
  } else {
    return bad_key(l, key, "must be a string");
  }
  if (!*out) return DRL_FAIL(DRL_ERR_OOM, "%s:%lld: out of memory", l->name, (long long)l->line);
  return DRL_OK;
}

static drl_status parse_messages(const line_ctx *l, const json_t *v, drl_prompt_record *r) {
  if (!json_is_array(v) || json_array_size(v) == 0)
    return bad_key(l, "messages", "must be a non-empty list of {\"role\", \"content\"} objects");
  r->messages = (drl_chat_message *)calloc(json_array_size(v), sizeof *r->messages);
  if (!r->messages) return DRL_FAIL(DRL_ERR_OOM, "%s:%lld: out of memory", l->name, (long long)l->line);
  size_t i;
  const json_t *m;
  json_array_foreach(v, i, m) {
    const json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
    if (!json_is_object(m) || !json_is_string(role) || !json_is_string(content))
      return bad_key(l, "messages", "entries must be objects with string \"role\" and \"content\"");
    const char *rv = json_string_value(role);
    if (strcmp(rv, "system") && strcmp(rv, "user") && strcmp(rv, "assistant")) {
      char what[96];
      snprintf(what, sizeof what, "has role \"%.32s\" (system, user or assistant)", rv);
      return bad_key(l, "messages", what);
    }
    drl_chat_message *out = &r->messages[r->n_messages++];
    out->role = strdup(rv);
    out->content = strdup(json_string_value(content));
    if (!out->role || !out->content) return DRL_FAIL(DRL_ERR_OOM, "%s:%lld: out of memory", l->name, (long long)l->line);
  }
  return DRL_OK;
}

static drl_status parse_ids(const line_ctx *l, const json_t *v, drl_prompt_record *r) {
  if (!json_is_array(v) || json_array_size(v) == 0) return bad_key(l, "prompt_ids", "must be a non-empty list of ids");
  r->prompt_ids = (int32_t *)malloc(json_array_size(v) * sizeof *r->prompt_ids);
  if (!r->prompt_ids) return DRL_FAIL(DRL_ERR_OOM, "%s:%lld: out of memory", l->name, (long long)l->line);
  size_t i;
  const json_t *id;
  json_array_foreach(v, i, id) {
    if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX)
      return bad_key(l, "prompt_ids", "must hold integer ids in [0, 2^31)");
    r->prompt_ids[r->n_ids++] = (int32_t)json_integer_value(id);
  }
  return DRL_OK;
}

static drl_status parse_record(const line_ctx *l, const json_t *o, drl_prompt_record *r) {
  r->line = l->line;
  if (!json_is_object(o)) return DRL_FAIL(DRL_ERR_FORMAT, "%s:%lld:1: not a JSON object", l->name, (long long)l->line);
  const json_t *prompt = json_object_get(o, "prompt"), *messages = json_object_get(o, "messages"),
               *ids = json_object_get(o, "prompt_ids"), *answer = json_object_get(o, "answer"),
               *system = json_object_get(o, "system");
  int kinds = !!prompt + !!messages + !!ids;
  if (kinds != 1)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s:%lld:1: a line needs exactly one of \"prompt\", \"messages\" and "
                    "\"prompt_ids\" (it has %d)", l->name, (long long)l->line, kinds);
  if (prompt) {
    if (!json_is_string(prompt)) return bad_key(l, "prompt", "must be a string");
    DRL_TRY(dup_string(l, prompt, "prompt", &r->prompt));
  }
  if (messages) DRL_TRY(parse_messages(l, messages, r));
  if (ids) DRL_TRY(parse_ids(l, ids, r));
  if (!answer || json_is_null(answer))
    return DRL_FAIL(DRL_ERR_FORMAT, "%s:%lld:1: \"answer\" is missing", l->name, (long long)l->line);
  DRL_TRY(dup_string(l, answer, "answer", &r->answer));
  if (system && !json_is_null(system)) {
    if (ids) return bad_key(l, "system", "does not go with \"prompt_ids\" (the ids already hold the whole prompt)");
    if (!json_is_string(system)) return bad_key(l, "system", "must be a string");
    DRL_TRY(dup_string(l, system, "system", &r->system));
  }
  return DRL_OK;
}

drl_status drl_prompt_jsonl_parse(const char *name, const char *text, size_t len, drl_prompt_set *set) {
  memset(set, 0, sizeof *set);
  int64_t cap = 0;
  drl_status st = DRL_OK;
  line_ctx l = {name, NULL, 0, 0};
  for (size_t at = 0; at < len && st == DRL_OK;) {
    const char *nl = (const char *)memchr(text + at, '\n', len - at);
    size_t end = nl ? (size_t)(nl - text) : len;
    l.text = text + at;
    l.len = end - at;
    ++l.line;
    at = end + 1;
    size_t k = 0;
    while (k < l.len && (l.text[k] == ' ' || l.text[k] == '\t' || l.text[k] == '\r')) ++k;
    if (k == l.len) continue; /* a blank line */
    json_error_t jerr;
    json_t *o = json_loadb(l.text, l.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) {
      st = DRL_FAIL(DRL_ERR_FORMAT, "%s:%lld:%d: not valid JSON: %s", name, (long long)l.line,
                    jerr.column > 0 ? jerr.column : 1, jerr.text);
      break;
    }
    if (set->n == cap) {
      int64_t ncap = cap ? 2 * cap : 64;
      drl_prompt_record *grown = (drl_prompt_record *)realloc(set->records, (size_t)ncap * sizeof *grown);
      if (!grown) {
        json_decref(o);
        st = DRL_FAIL(DRL_ERR_OOM, "%s: out of memory at line %lld", name, (long long)l.line);
        break;
      }
      set->records = grown;
      cap = ncap;
    }
    drl_prompt_record *r = &set->records[set->n++];
    memset(r, 0, sizeof *r);
    st = parse_record(&l, o, r);
    json_decref(o);
  }
  if (st == DRL_OK && set->n == 0) st = DRL_FAIL(DRL_ERR_FORMAT, "%s: no prompts (every line is blank)", name);
  if (st != DRL_OK) drl_prompt_set_free(set);
  return st;
}

drl_status drl_prompt_jsonl_read(const char *path, drl_prompt_set *set) {
  memset(set, 0, sizeof *set);
  char *buf = NULL;
  size_t n = 0;
  DRL_TRY(drl_read_file(path, MAX_FILE_BYTES, &buf, &n));
  drl_status st = drl_prompt_jsonl_parse(path, buf, n, set);
  free(buf);
  return st;
}
