/* Configuration: loading YAML text and files. A strict pre-check over libyaml events, then libcyaml.
 *
 * Why a pre-check before libcyaml: libcyaml 1.3 reads numbers with strtoll/strtod without looking at what follows
 * ("1.5" loads into an int as 1, "1e-3x" as 0.001, "010" as octal 8), reads any word but a few as `true`, cannot
 * tell an empty list from a missing one, and does not know the allowed keys of a section or a value's range. The
 * pre-check walks the same text with the table and stops at the first problem with its line; libcyaml then does
 * the loading. */
#include <cyaml/cyaml.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "engine/config_internal.h"

/* Where key k lives in cfg, for writing. */
static void *cfg_member_mut(drl_config *cfg, const cfg_key *k) { return (char *)cfg + k->offset; }

/* ------------------------------------------------------------------------------------------------------------ */
/* Pre-check: walk the YAML events with the table; the first problem becomes the error, with its line            */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct walker {
  yaml_parser_t parser;
  yaml_event_t ev;
  bool have_ev;
  const char *origin;
  bool any_section; /* false: an empty document, nothing for libcyaml to load */
} walker;

static drl_status walk_fail(const walker *w, const yaml_mark_t *mark, const char *fmt, ...) DRL_PRINTF(3, 4);
static drl_status walk_fail(const walker *w, const yaml_mark_t *mark, const char *fmt, ...) {
  char msg[1536];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return DRL_FAIL(DRL_ERR_CONFIG, "%s:%zu: %s", w->origin, mark->line + 1, msg);
}

static drl_status walk_next(walker *w) {
  if (w->have_ev) yaml_event_delete(&w->ev);
  w->have_ev = false;
  if (!yaml_parser_parse(&w->parser, &w->ev)) {
    const yaml_parser_t *p = &w->parser;
    if (p->error == YAML_MEMORY_ERROR) return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory parsing YAML", w->origin);
    char ctx[160] = "";
    if (p->context)
      snprintf(ctx, sizeof ctx, " (%s at line %zu)", p->context, p->context_mark.line + 1);
    return DRL_FAIL(DRL_ERR_CONFIG, "%s:%zu:%zu: malformed YAML: %s%s", w->origin, p->problem_mark.line + 1,
                    p->problem_mark.column + 1, p->problem ? p->problem : "parse error", ctx);
  }
  w->have_ev = true;
  return DRL_OK;
}

static const char *event_noun(const yaml_event_t *e) {
  switch (e->type) {
    case YAML_MAPPING_START_EVENT: return "a mapping";
    case YAML_SEQUENCE_START_EVENT: return "a list";
    case YAML_SCALAR_EVENT: return "a single value";
    default: return "something else";
  }
}

static bool scalar_is_plain(const yaml_event_t *e) { return e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE; }

/* The value of key k; the current event is its first. */
static drl_status walk_value(walker *w, const cfg_key *k) {
  char why[1024], type[512];
  cfg_value v;
  const char *sec = cfg_sections[k->section].name;
  if (w->ev.type == YAML_ALIAS_EVENT) return DRL_OK; /* see ALIASES below */
  if (k->kind != K_LIST) {
    if (w->ev.type != YAML_SCALAR_EVENT) {
      cfg_type_text(k, type, sizeof type);
      return walk_fail(w, &w->ev.start_mark, "%s.%s: expected %s, got %s", sec, k->name, type,
                       event_noun(&w->ev));
    }
    const char *s = (const char *)w->ev.data.scalar.value;
    size_t len = w->ev.data.scalar.length;
    if (!cfg_parse_value(k, s, len, scalar_is_plain(&w->ev), &v, why, sizeof why) ||
        !cfg_check_value(k, &v, why, sizeof why))
      return walk_fail(w, &w->ev.start_mark, "%s.%s: %s", sec, k->name, why);
    return DRL_OK;
  }
  if (w->ev.type != YAML_SEQUENCE_START_EVENT) {
    cfg_type_text(k, type, sizeof type);
    char shown[96] = "";
    if (w->ev.type == YAML_SCALAR_EVENT)
      cfg_quote_for_msg((const char *)w->ev.data.scalar.value, w->ev.data.scalar.length, shown, sizeof shown);
    return walk_fail(w, &w->ev.start_mark, "%s.%s: expected %s, written [a, b], got %s%s%s", sec, k->name, type,
                     event_noun(&w->ev), shown[0] ? " " : "", shown);
  }
  yaml_mark_t start = w->ev.start_mark;
  int items[CFG_MAX_ENUM_VALUES + 1], n = 0;
  for (;;) {
    DRL_TRY(walk_next(w));
    if (w->ev.type == YAML_SEQUENCE_END_EVENT) break;
    if (w->ev.type == YAML_ALIAS_EVENT) continue;
    if (w->ev.type != YAML_SCALAR_EVENT) {
      cfg_type_text(k, type, sizeof type);
      return walk_fail(w, &w->ev.start_mark, "%s.%s: expected %s, got %s inside the list", sec, k->name, type,
                       event_noun(&w->ev));
    }
    if (!cfg_parse_value(k, (const char *)w->ev.data.scalar.value, w->ev.data.scalar.length, scalar_is_plain(&w->ev),
                     &v, why, sizeof why))
      return walk_fail(w, &w->ev.start_mark, "%s.%s: %s", sec, k->name, why);
    for (int j = 0; j < n; ++j)
      if (items[j] == v.e) {
        items[n] = v.e;
        cfg_check_list(k, items, n + 1, why, sizeof why);
        return walk_fail(w, &w->ev.start_mark, "%s.%s: %s", sec, k->name, why);
      }
    items[n++] = v.e; /* distinct values of the enum: n stays <= n_names <= CFG_MAX_ENUM_VALUES */
  }
  if (!cfg_check_list(k, items, n, why, sizeof why)) return walk_fail(w, &start, "%s.%s: %s", sec, k->name, why);
  return DRL_OK;
}

/* One section's mapping; the current event is its MAPPING_START. */
static drl_status walk_section(walker *w, int sec) {
  size_t seen_line[CFG_N_KEYS] = {0}; /* 1-based line of each key seen, 0 = not yet */
  char msg[1536];
  for (;;) {
    DRL_TRY(walk_next(w));
    if (w->ev.type == YAML_MAPPING_END_EVENT) return DRL_OK;
    if (w->ev.type != YAML_SCALAR_EVENT)
      return walk_fail(w, &w->ev.start_mark, "section '%s': expected a key name, got %s", cfg_sections[sec].name,
                       event_noun(&w->ev));
    const char *name = (const char *)w->ev.data.scalar.value;
    const cfg_key *k = cfg_find_key(sec, name);
    if (!k) {
      cfg_unknown_key_msg(sec, name, msg, sizeof msg);
      return walk_fail(w, &w->ev.start_mark, "%s", msg);
    }
    size_t idx = (size_t)(k - cfg_keys);
    if (seen_line[idx])
      return walk_fail(w, &w->ev.start_mark, "%s.%s is given twice (first at line %zu)", cfg_sections[sec].name,
                       k->name, seen_line[idx]);
    seen_line[idx] = w->ev.start_mark.line + 1;
    DRL_TRY(walk_next(w));
    DRL_TRY(walk_value(w, k));
  }
}

/* The whole stream: at most one document, whose top level maps section names to mappings of keys. */
static drl_status walk_document(walker *w) {
  char msg[1024];
  DRL_TRY(walk_next(w)); /* STREAM_START */
  DRL_TRY(walk_next(w));
  if (w->ev.type == YAML_STREAM_END_EVENT) return DRL_OK; /* empty text or comments only */
  DRL_TRY(walk_next(w)); /* past DOCUMENT_START */
  const yaml_event_t *e = &w->ev;
  if (e->type == YAML_SCALAR_EVENT && scalar_is_plain(e) && e->data.scalar.length == 0) {
    DRL_TRY(walk_next(w)); /* "---" alone: an empty document */
  } else if (e->type != YAML_MAPPING_START_EVENT) {
    char list[512], shown[96] = "";
    cfg_sections_list(list, sizeof list);
    if (e->type == YAML_SCALAR_EVENT)
      cfg_quote_for_msg((const char *)e->data.scalar.value, e->data.scalar.length, shown, sizeof shown);
    return walk_fail(w, &e->start_mark,
                     "not a dynrl config: the top level must map section names (%s) to keys, got %s%s%s", list,
                     event_noun(e), shown[0] ? " " : "", shown);
  } else {
    size_t seen_line[CFG_N_SECTIONS] = {0};
    for (;;) {
      DRL_TRY(walk_next(w));
      if (w->ev.type == YAML_MAPPING_END_EVENT) break;
      if (w->ev.type != YAML_SCALAR_EVENT)
        return walk_fail(w, &w->ev.start_mark, "expected a section name, got %s", event_noun(&w->ev));
      int sec = cfg_find_section((const char *)w->ev.data.scalar.value);
      if (sec < 0) {
        cfg_unknown_section_msg((const char *)w->ev.data.scalar.value, msg, sizeof msg);
        return walk_fail(w, &w->ev.start_mark, "%s", msg);
      }
      if (seen_line[sec])
        return walk_fail(w, &w->ev.start_mark, "section '%s' is given twice (first at line %zu)",
                         cfg_sections[sec].name, seen_line[sec]);
      seen_line[sec] = w->ev.start_mark.line + 1;
      DRL_TRY(walk_next(w));
      if (w->ev.type == YAML_ALIAS_EVENT) {
        w->any_section = true;
        continue;
      }
      if (w->ev.type == YAML_SCALAR_EVENT && scalar_is_plain(&w->ev) && w->ev.data.scalar.length == 0)
        return walk_fail(w, &w->ev.start_mark, "section '%s' is empty: remove it or write '%s: {}'",
                         cfg_sections[sec].name, cfg_sections[sec].name);
      if (w->ev.type != YAML_MAPPING_START_EVENT)
        return walk_fail(w, &w->ev.start_mark, "section '%s': expected a mapping of keys, got %s",
                         cfg_sections[sec].name, event_noun(&w->ev));
      w->any_section = true;
      DRL_TRY(walk_section(w, sec));
    }
    DRL_TRY(walk_next(w)); /* DOCUMENT_END */
  }
  DRL_TRY(walk_next(w));
  if (w->ev.type != YAML_STREAM_END_EVENT)
    return walk_fail(w, &w->ev.start_mark, "a config is one YAML document; found a second one");
  return DRL_OK;
}

/* Syntax only: a broken file is reported as such even when an earlier part would also fail the schema. */
static drl_status walk_syntax(walker *w) {
  do DRL_TRY(walk_next(w));
  while (w->ev.type != YAML_STREAM_END_EVENT);
  return DRL_OK;
}

static drl_status precheck(const char *text, size_t len, const char *origin, bool *any_section) {
  drl_status st = DRL_OK;
  for (int pass = 0; pass < 2 && st == DRL_OK; ++pass) {
    walker w;
    memset(&w, 0, sizeof w);
    w.origin = origin;
    if (!yaml_parser_initialize(&w.parser)) return DRL_FAIL(DRL_ERR_OOM, "%s: cannot start the YAML parser", origin);
    yaml_parser_set_input_string(&w.parser, (const unsigned char *)text, len);
    st = pass == 0 ? walk_syntax(&w) : walk_document(&w);
    if (w.have_ev) yaml_event_delete(&w.ev);
    yaml_parser_delete(&w.parser);
    *any_section = w.any_section;
  }
  return st;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* libcyaml: a schema built from the table into "raw" structs where every key is an optional pointer, so that a  */
/* key missing from the file (NULL) is told apart from one set to zero                                           */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct raw_section {
  void *slot[CFG_N_KEYS];      /* slot[i]: cfg_keys[i]'s value, allocated by libcyaml, NULL when absent */
  uint32_t count[CFG_N_KEYS];  /* LIST: number of items */
} raw_section;

typedef struct raw_top {
  raw_section *section[CFG_N_SECTIONS];
} raw_top;

typedef struct schema {
  cyaml_schema_field_t fields[CFG_N_KEYS + CFG_N_SECTIONS]; /* each section's keys, then a terminator */
  cyaml_schema_value_t entries[CFG_N_KEYS];             /* LIST: the item schema */
  cyaml_schema_field_t top_fields[CFG_N_SECTIONS + 1];
  cyaml_schema_value_t top;
} schema;

/* Filled per load on the caller's stack: no global mutable state, so loading is thread-safe. */
static void build_schema(schema *sc) {
  memset(sc, 0, sizeof *sc);
  size_t f = 0;
  for (int s = 0; s < CFG_N_SECTIONS; ++s) {
    cyaml_schema_field_t *tf = &sc->top_fields[s];
    tf->key = cfg_sections[s].name;
    tf->data_offset = (uint32_t)(offsetof(raw_top, section) + (size_t)s * sizeof(raw_section *));
    tf->value.type = CYAML_MAPPING;
    tf->value.flags = (enum cyaml_flag)(CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL);
    tf->value.data_size = sizeof(raw_section);
    tf->value.mapping.fields = &sc->fields[f];
    for (size_t i = 0; i < CFG_N_KEYS; ++i) {
      const cfg_key *k = &cfg_keys[i];
      if (k->section != s) continue;
      cyaml_schema_field_t *fd = &sc->fields[f++];
      cyaml_schema_value_t *v = &fd->value;
      fd->key = k->name;
      fd->data_offset = (uint32_t)(offsetof(raw_section, slot) + i * sizeof(void *));
      v->flags = (enum cyaml_flag)(CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL);
      v->data_size = (uint32_t)k->size;
      switch (k->kind) {
        case K_U64: v->type = CYAML_UINT; break;
        case K_INT: v->type = CYAML_INT; break;
        case K_REAL: v->type = CYAML_FLOAT; break;
        case K_BOOL: v->type = CYAML_BOOL; break;
        case K_STR:
          v->type = CYAML_STRING;
          v->data_size = sizeof(char);
          v->string.min = 0;
          v->string.max = DRL_CONFIG_STR_CAP - 1;
          break;
        case K_ENUM:
          v->type = CYAML_ENUM;
          v->flags = (enum cyaml_flag)(v->flags | CYAML_FLAG_STRICT);
          v->enumeration.strings = k->names;
          v->enumeration.count = (uint32_t)k->n_names;
          break;
        case K_LIST: {
          cyaml_schema_value_t *item = &sc->entries[i];
          item->type = CYAML_ENUM;
          item->flags = CYAML_FLAG_STRICT;
          item->data_size = sizeof(int);
          item->enumeration.strings = k->names;
          item->enumeration.count = (uint32_t)k->n_names;
          v->type = CYAML_SEQUENCE;
          v->data_size = sizeof(int);
          v->sequence.entry = item;
          v->sequence.min = 0;
          v->sequence.max = (uint32_t)k->n_names;
          fd->count_offset = (uint32_t)(offsetof(raw_section, count) + i * sizeof(uint32_t));
          fd->count_size = sizeof(uint32_t);
        } break;
      }
    }
    f++; /* terminator: key == NULL from the memset */
  }
  sc->top.type = CYAML_MAPPING;
  sc->top.flags = CYAML_FLAG_POINTER;
  sc->top.data_size = sizeof(raw_top);
  sc->top.mapping.fields = sc->top_fields;
}

/* libcyaml's log goes into the error message, never to stderr. */
typedef struct cyaml_log_buf {
  char text[1024];
  size_t len;
} cyaml_log_buf;

static void capture_cyaml_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args) {
  (void)level;
  cyaml_log_buf *b = (cyaml_log_buf *)ctx;
  if (b->len && b->len + 1 < sizeof b->text) b->text[b->len++] = ' '; /* one line per call, joined */
  if (b->len + 1 >= sizeof b->text) return;
  vsnprintf(b->text + b->len, sizeof b->text - b->len, fmt, args);
  b->len = strlen(b->text);
  size_t out = 0; /* newlines and indentation become single spaces */
  for (size_t i = 0; i < b->len; ++i) {
    char c = b->text[i] == '\n' || b->text[i] == '\t' ? ' ' : b->text[i];
    if (c == ' ' && (out == 0 || b->text[out - 1] == ' ')) continue;
    b->text[out++] = c;
  }
  while (out && b->text[out - 1] == ' ') --out;
  b->text[out] = '\0';
  b->len = out;
}

/* Copies every key present in raw into cfg; present[i] tells which ones were. */
static void merge_raw(drl_config *cfg, const raw_top *raw, bool *present) {
  for (size_t i = 0; i < CFG_N_KEYS; ++i) {
    const cfg_key *k = &cfg_keys[i];
    const raw_section *rs = raw->section[k->section];
    if (!rs || !rs->slot[i]) continue;
    const void *src = rs->slot[i];
    switch (k->kind) {
      case K_STR: {
        size_t len = strlen((const char *)src); /* <= STR_CAP - 1: checked by both passes */
        memcpy(cfg_member_mut(cfg, k), src, len + 1);
      } break;
      case K_LIST: {
        int n = (int)rs->count[i];
        if (n < 1 || n > k->n_names) continue;
        cfg_store_list(cfg, k, (const int *)src, n);
      } break;
      default: memcpy(cfg_member_mut(cfg, k), src, k->size); break;
    }
    present[i] = true;
  }
}

/* Pre-check, libcyaml load, merge into *cfg (which holds the values to override). */
static drl_status load_over(drl_config *cfg, const char *text, size_t len, const char *origin, bool *present) {
  bool any_section = false;
  DRL_TRY(precheck(text, len, origin, &any_section));
  if (!any_section) return DRL_OK;

  schema sc;
  build_schema(&sc);
  cyaml_log_buf log;
  memset(&log, 0, sizeof log);
  cyaml_config_t cc;
  memset(&cc, 0, sizeof cc);
  cc.log_fn = capture_cyaml_log;
  cc.log_ctx = &log;
  cc.mem_fn = cyaml_mem;
  cc.log_level = CYAML_LOG_WARNING;
  /* ALIASES: a value written as *name is left unchecked by the pre-check and refused here, with libcyaml's own
   * message (configs gain little from aliases, and an aliased value would escape the strict pre-check). */
  cc.flags = CYAML_CFG_NO_ALIAS;
  raw_top *raw = NULL;
  cyaml_err_t err = cyaml_load_data((const uint8_t *)text, len, &cc, &sc.top, (cyaml_data_t **)&raw, NULL);
  if (err != CYAML_OK)
    return DRL_FAIL(err == CYAML_ERR_OOM ? DRL_ERR_OOM : DRL_ERR_CONFIG, "%s: libcyaml: %s: %s", origin,
                    cyaml_strerror(err), log.text);
  if (raw) {
    merge_raw(cfg, raw, present);
    cyaml_free(&cc, &sc.top, raw, 0);
  }
  return DRL_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Public: loading                                                                                                */
/* ------------------------------------------------------------------------------------------------------------ */

drl_status drl_config_load_default(drl_config *cfg) {
  if (!cfg) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_load_default: cfg is NULL");
  drl_config tmp;
  memset(&tmp, 0, sizeof tmp);
  bool present[CFG_N_KEYS] = {false};
  const char *text = drl_config_default_yaml();
  drl_status st = load_over(&tmp, text, strlen(text), "embedded default config", present);
  if (st != DRL_OK) return drl_fail_context(DRL_ERR_INTERNAL, "the embedded default config does not load");
  /* The default text is the one source of defaults: every key must be in it. */
  for (size_t i = 0; i < CFG_N_KEYS; ++i)
    if (!present[i])
      return DRL_FAIL(DRL_ERR_INTERNAL, "the embedded default config lacks %s.%s", cfg_sections[cfg_keys[i].section].name,
                      cfg_keys[i].name);
  st = drl_config_validate(&tmp);
  if (st != DRL_OK) return drl_fail_context(DRL_ERR_INTERNAL, "the embedded default config is invalid");
  *cfg = tmp;
  return DRL_OK;
}

static drl_status load_text(drl_config *cfg, const char *text, size_t len, const char *origin) {
  drl_config tmp;
  DRL_TRY(drl_config_load_default(&tmp));
  bool present[CFG_N_KEYS] = {false};
  DRL_TRY(load_over(&tmp, text, len, origin, present));
  drl_status st = drl_config_validate(&tmp);
  if (st != DRL_OK) return drl_fail_context(st, "%s", origin);
  *cfg = tmp;
  return DRL_OK;
}

drl_status drl_config_load_string(drl_config *cfg, const char *yaml, const char *origin) {
  if (!cfg || !yaml) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_load_string: cfg or yaml is NULL");
  return load_text(cfg, yaml, strlen(yaml), origin ? origin : "<string>");
}

/* Configs are small; a file this large is not one (and would only waste memory). */
#define MAX_CONFIG_BYTES (16u << 20)

drl_status drl_config_load_file(drl_config *cfg, const char *path) {
  if (!cfg || !path) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_load_file: cfg or path is NULL");
  FILE *f = fopen(path, "rb");
  if (!f) return DRL_FAIL(DRL_ERR_IO, "cannot open config file '%s': %s", path, strerror(errno));
  cfg_strbuf b = {0};
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= MAX_CONFIG_BYTES)
    cfg_sb_bytes(&b, chunk, n);
  int read_error = ferror(f) ? errno : 0;
  fclose(f);
  drl_status st;
  if (read_error)
    st = DRL_FAIL(DRL_ERR_IO, "cannot read config file '%s': %s", path, strerror(read_error));
  else if (b.failed)
    st = DRL_FAIL(DRL_ERR_OOM, "out of memory reading config file '%s'", path);
  else if (b.len > MAX_CONFIG_BYTES)
    st = DRL_FAIL(DRL_ERR_CONFIG, "'%s' is larger than %u MiB: not a config file", path, MAX_CONFIG_BYTES >> 20);
  else
    st = load_text(cfg, b.p ? b.p : "", b.len, path);
  free(b.p);
  return st;
}

