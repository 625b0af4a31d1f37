/* Configuration: loading YAML text and files. One pass over libyaml's events with the key table: each scalar is
 * parsed, range-checked and stored into the config as it is met, and the first problem stops the load with its
 * line. A YAML schema library is not used: libcyaml, for one, reads numbers with strtoll/strtod without looking at
 * what follows ("1.5" loads into an int as 1, "010" as octal 8), reads any word but a few as `true`, cannot tell an
 * empty list from a missing one, and does not know the allowed keys of a section or a value's range. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "engine/config_internal.h"

/* ------------------------------------------------------------------------------------------------------------ */
/* The walk                                                                                                       */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct walker {
  yaml_parser_t parser;
  yaml_event_t ev;
  bool have_ev;
  const char *origin;
  drl_config *cfg;     /* receives each value once it is checked */
  bool *present;       /* present[i]: cfg_keys[i] was given */
  bool parser_failed;  /* libyaml stopped: no events follow */
  char msg[2048];      /* the problem, "origin:line: ...", recorded by the caller (the size of the error record) */
} walker;

static drl_status walk_fail(walker *w, const yaml_mark_t *mark, const char *fmt, ...) DRL_PRINTF(3, 4);
static drl_status walk_fail(walker *w, const yaml_mark_t *mark, const char *fmt, ...) {
  char msg[1536];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(w->msg, sizeof w->msg, "%s:%zu: %s", w->origin, mark->line + 1, msg);
  return DRL_ERR_CONFIG;
}

static drl_status walk_next(walker *w) {
  if (w->have_ev) yaml_event_delete(&w->ev);
  w->have_ev = false;
  if (!yaml_parser_parse(&w->parser, &w->ev)) {
    const yaml_parser_t *p = &w->parser;
    w->parser_failed = true;
    if (p->error == YAML_MEMORY_ERROR) {
      snprintf(w->msg, sizeof w->msg, "%s: out of memory parsing YAML", w->origin);
      return DRL_ERR_OOM;
    }
    char ctx[160] = "";
    if (p->context) snprintf(ctx, sizeof ctx, " (%s at line %zu)", p->context, p->context_mark.line + 1);
    snprintf(w->msg, sizeof w->msg, "%s:%zu:%zu: malformed YAML: %s%s", w->origin, p->problem_mark.line + 1,
             p->problem_mark.column + 1, p->problem ? p->problem : "parse error", ctx);
    return DRL_ERR_CONFIG;
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

/* Aliases (*name) are refused: configs gain little from them, and an aliased value would have to be checked and
 * stored once per use. An anchor (&name) alone is harmless and ignored, like tags. */
static drl_status alias_fail(walker *w, const char *where, const char *what) {
  return walk_fail(w, &w->ev.start_mark, "%s: YAML aliases (*%.64s) are not supported; write %s", where,
                   (const char *)w->ev.data.alias.anchor, what);
}

/* The value of key k; the current event is its first. Stores it into w->cfg once it is checked. */
static drl_status walk_value(walker *w, const cfg_key *k) {
  char why[1024], type[512], path[160];
  cfg_value v;
  const char *sec = cfg_sections[k->section].name;
  snprintf(path, sizeof path, "%s.%s", sec, k->name);
  if (w->ev.type == YAML_ALIAS_EVENT) return alias_fail(w, path, "the value itself");
  if (k->kind != K_LIST) {
    if (w->ev.type != YAML_SCALAR_EVENT) {
      cfg_type_text(k, type, sizeof type);
      return walk_fail(w, &w->ev.start_mark, "%s: expected %s, got %s", path, type, event_noun(&w->ev));
    }
    const char *s = (const char *)w->ev.data.scalar.value;
    size_t len = w->ev.data.scalar.length;
    if (!cfg_parse_value(k, s, len, scalar_is_plain(&w->ev), &v, why, sizeof why) ||
        !cfg_check_value(k, &v, why, sizeof why))
      return walk_fail(w, &w->ev.start_mark, "%s: %s", path, why);
    cfg_store_value(w->cfg, k, &v); /* strings: copied out of the event before it is deleted */
    return DRL_OK;
  }
  if (w->ev.type != YAML_SEQUENCE_START_EVENT) {
    cfg_type_text(k, type, sizeof type);
    char shown[96] = "";
    if (w->ev.type == YAML_SCALAR_EVENT)
      cfg_quote_for_msg((const char *)w->ev.data.scalar.value, w->ev.data.scalar.length, shown, sizeof shown);
    return walk_fail(w, &w->ev.start_mark, "%s: expected %s, written [a, b], got %s%s%s", path, type,
                     event_noun(&w->ev), shown[0] ? " " : "", shown);
  }
  yaml_mark_t start = w->ev.start_mark;
  int items[CFG_MAX_ENUM_VALUES + 1], n = 0;
  for (;;) {
    DRL_TRY(walk_next(w));
    if (w->ev.type == YAML_SEQUENCE_END_EVENT) break;
    if (w->ev.type == YAML_ALIAS_EVENT) return alias_fail(w, path, "the value itself");
    if (w->ev.type != YAML_SCALAR_EVENT) {
      cfg_type_text(k, type, sizeof type);
      return walk_fail(w, &w->ev.start_mark, "%s: expected %s, got %s inside the list", path, type,
                       event_noun(&w->ev));
    }
    if (!cfg_parse_value(k, (const char *)w->ev.data.scalar.value, w->ev.data.scalar.length,
                         scalar_is_plain(&w->ev), &v, why, sizeof why))
      return walk_fail(w, &w->ev.start_mark, "%s: %s", path, why);
    for (int j = 0; j < n; ++j)
      if (items[j] == v.e) {
        items[n] = v.e;
        cfg_check_list(k, items, n + 1, why, sizeof why);
        return walk_fail(w, &w->ev.start_mark, "%s: %s", path, why);
      }
    items[n++] = v.e; /* distinct values of the enum: n stays <= n_names <= CFG_MAX_ENUM_VALUES */
  }
  if (!cfg_check_list(k, items, n, why, sizeof why)) return walk_fail(w, &start, "%s: %s", path, why);
  cfg_store_list(w->cfg, k, items, n);
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
    w->present[idx] = true;
  }
}

/* The top-level mapping of section names; the current event is its MAPPING_START. */
static drl_status walk_sections(walker *w) {
  char msg[1024];
  size_t seen_line[CFG_N_SECTIONS] = {0};
  for (;;) {
    DRL_TRY(walk_next(w));
    if (w->ev.type == YAML_MAPPING_END_EVENT) return DRL_OK;
    if (w->ev.type != YAML_SCALAR_EVENT)
      return walk_fail(w, &w->ev.start_mark, "expected a section name, got %s", event_noun(&w->ev));
    int sec = cfg_find_section((const char *)w->ev.data.scalar.value);
    if (sec < 0) {
      cfg_unknown_section_msg((const char *)w->ev.data.scalar.value, msg, sizeof msg);
      return walk_fail(w, &w->ev.start_mark, "%s", msg);
    }
    const char *name = cfg_sections[sec].name;
    if (seen_line[sec])
      return walk_fail(w, &w->ev.start_mark, "section '%s' is given twice (first at line %zu)", name,
                       seen_line[sec]);
    seen_line[sec] = w->ev.start_mark.line + 1;
    DRL_TRY(walk_next(w));
    if (w->ev.type == YAML_ALIAS_EVENT) {
      snprintf(msg, sizeof msg, "section '%s'", name);
      return alias_fail(w, msg, "its keys");
    }
    if (w->ev.type == YAML_SCALAR_EVENT && scalar_is_plain(&w->ev) && w->ev.data.scalar.length == 0)
      return walk_fail(w, &w->ev.start_mark, "section '%s' is empty: remove it or write '%s: {}'", name, name);
    if (w->ev.type != YAML_MAPPING_START_EVENT)
      return walk_fail(w, &w->ev.start_mark, "section '%s': expected a mapping of keys, got %s", name,
                       event_noun(&w->ev));
    DRL_TRY(walk_section(w, sec));
  }
}

/* The whole stream: at most one document, whose top level maps section names to mappings of keys. */
static drl_status walk_document(walker *w) {
  DRL_TRY(walk_next(w)); /* STREAM_START */
  DRL_TRY(walk_next(w));
  if (w->ev.type == YAML_STREAM_END_EVENT) return DRL_OK; /* empty text or comments only */
  DRL_TRY(walk_next(w));                                  /* past DOCUMENT_START */
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
    DRL_TRY(walk_sections(w));
    DRL_TRY(walk_next(w)); /* DOCUMENT_END */
  }
  DRL_TRY(walk_next(w));
  if (w->ev.type != YAML_STREAM_END_EVENT)
    return walk_fail(w, &w->ev.start_mark, "a config is one YAML document; found a second one");
  return DRL_OK;
}

/* Loads text over *cfg (which holds the values to override; on failure it holds a part of the text's values, so
 * callers load into a copy). present[i] is set for each key the text gives. */
static drl_status load_over(drl_config *cfg, const char *text, size_t len, const char *origin, bool *present) {
  walker w;
  memset(&w, 0, sizeof w);
  w.origin = origin;
  w.cfg = cfg;
  w.present = present;
  if (!yaml_parser_initialize(&w.parser)) return DRL_FAIL(DRL_ERR_OOM, "%s: cannot start the YAML parser", origin);
  yaml_parser_set_input_string(&w.parser, (const unsigned char *)text, len);
  drl_status st = walk_document(&w);
  /* A broken file is reported as such even when an earlier part fails the schema: after a schema error the rest
   * of the stream is still parsed, and a syntax error there replaces the schema error. */
  while (st != DRL_OK && !w.parser_failed && w.have_ev && w.ev.type != YAML_STREAM_END_EVENT &&
         w.ev.type != YAML_NO_EVENT) {
    drl_status syntax = walk_next(&w);
    if (syntax != DRL_OK) st = syntax;
  }
  if (w.have_ev) yaml_event_delete(&w.ev);
  yaml_parser_delete(&w.parser);
  return st == DRL_OK ? DRL_OK : DRL_FAIL(st, "%s", w.msg);
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
      return DRL_FAIL(DRL_ERR_INTERNAL, "the embedded default config lacks %s.%s",
                      cfg_sections[cfg_keys[i].section].name, cfg_keys[i].name);
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
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= MAX_CONFIG_BYTES) cfg_sb_bytes(&b, chunk, n);
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
