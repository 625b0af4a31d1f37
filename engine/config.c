/* Configuration: the key table, the embedded default, loading (a strict pre-check over libyaml events, then
 * libcyaml), --set overrides, validation and printing. Everything is driven by the tables in config.h.
 *
 * Why a pre-check before libcyaml: libcyaml 1.3 reads numbers with strtoll/strtod without looking at what follows
 * ("1.5" loads into an int as 1, "1e-3x" as 0.001, "010" as octal 8), reads any word but a few as `true`, cannot
 * tell an empty list from a missing one, and does not know the allowed keys of a section or a value's range. The
 * pre-check walks the same text with the table and stops at the first problem with its line; libcyaml then does
 * the loading. Numbers are read and printed in the C locale's format (a host that calls setlocale(LC_NUMERIC)
 * changes strtod and printf, as it does for every C program). */
#include "config.h"

#include <cyaml/cyaml.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "kernels/status.h"

/* ------------------------------------------------------------------------------------------------------------ */
/* The key table, generated from config.h                                                                        */
/* ------------------------------------------------------------------------------------------------------------ */

typedef enum key_kind { K_U64, K_INT, K_REAL, K_BOOL, K_STR, K_ENUM, K_LIST } key_kind;

typedef struct key_info {
  int section;    /* index into sections[] */
  const char *name;
  key_kind kind;
  size_t offset;  /* of the member in drl_config */
  size_t size;
  double lo, hi;  /* INT, REAL: the range; STR: lengths */
  bool lo_open, hi_open;
  const cyaml_strval_t *names;  /* ENUM, LIST: the allowed values */
  int n_names;
  size_t items_offset;          /* LIST: offset of items[] in the list struct */
  const char *def;              /* the default as YAML text */
  const char *help;
} key_info;

#define STRVAL_(id, str) {str, id},
#define DEFINE_STRVALS_(e) static const cyaml_strval_t strval_##e[] = {DRL_CFG_ENUM_##e(STRVAL_)};
DRL_CFG_ENUMS(DEFINE_STRVALS_)

/* Generic code reads and writes enum values and list items as int. */
#define ASSERT_ENUM_IS_INT_(e) \
  _Static_assert(sizeof(drl_cfg_##e) == sizeof(int), "drl_cfg_" #e " must be int-sized");
DRL_CFG_ENUMS(ASSERT_ENUM_IS_INT_)
#define MAX_ENUM_VALUES 64 /* lists are checked in fixed arrays of this size */
#define ASSERT_ENUM_SMALL_(e) _Static_assert(DRL_CFG_COUNT_##e <= MAX_ENUM_VALUES, "drl_cfg_" #e " is too large");
DRL_CFG_ENUMS(ASSERT_ENUM_SMALL_)

enum {
#define SECTION_INDEX_(sec, help) SEC_##sec,
  DRL_CONFIG_SECTIONS(SECTION_INDEX_) N_SECTIONS
};

typedef struct section_info {
  const char *name, *help;
} section_info;
#define SECTION_INFO_(sec, help) {#sec, help},
static const section_info sections[] = {DRL_CONFIG_SECTIONS(SECTION_INFO_)};

#define KINFO_U64 .kind = K_U64
#define KINFO_INT(a, b) .kind = K_INT, .lo = (a), .hi = (b)
#define KINFO_REAL(a, b) .kind = K_REAL, .lo = (a), .hi = (b)
#define KINFO_REAL_GT(a, b) .kind = K_REAL, .lo = (a), .hi = (b), .lo_open = true
#define KINFO_REAL_LT(a, b) .kind = K_REAL, .lo = (a), .hi = (b), .hi_open = true
#define KINFO_BOOL .kind = K_BOOL
#define KINFO_STR(min_len) .kind = K_STR, .lo = (min_len), .hi = DRL_CONFIG_STR_CAP - 1
#define KINFO_ENUM(e) .kind = K_ENUM, .names = strval_##e, .n_names = DRL_CFG_COUNT_##e
#define KINFO_LIST(e) \
  .kind = K_LIST, .names = strval_##e, .n_names = DRL_CFG_COUNT_##e, .items_offset = offsetof(drl_cfg_##e##_list, items)
#define KEY_INFO_(sec, key, type, default_yaml, help_text)                                                     \
  {.section = SEC_##sec, .name = #key, .offset = offsetof(drl_config, sec.key),                                \
   .size = sizeof(((drl_config *)0)->sec.key), KINFO_##type, .def = default_yaml, .help = help_text},
#define SECTION_KEYS_(sec, help) DRL_CONFIG_KEYS_##sec(KEY_INFO_)
static const key_info keys[] = {DRL_CONFIG_SECTIONS(SECTION_KEYS_)};
#define N_KEYS (sizeof keys / sizeof keys[0])

/* ------------------------------------------------------------------------------------------------------------ */
/* The embedded default: assembled from the tables, in the layout drl_config_to_yaml prints                       */
/* ------------------------------------------------------------------------------------------------------------ */

#define YAML_HEADER "# dynrl configuration. Every key is optional in a file: a missing key keeps the value shown here.\n"
#define DEFAULT_KEY_(sec, key, type, default_yaml, help) "  # " help "\n  " #key ": " default_yaml "\n"
#define DEFAULT_SECTION_(sec, help) "\n# " help "\n" #sec ":\n" DRL_CONFIG_KEYS_##sec(DEFAULT_KEY_)
static const char default_yaml[] = YAML_HEADER DRL_CONFIG_SECTIONS(DEFAULT_SECTION_);

const char *drl_config_default_yaml(void) { return default_yaml; }

/* ------------------------------------------------------------------------------------------------------------ */
/* Small helpers                                                                                                  */
/* ------------------------------------------------------------------------------------------------------------ */

/* A growing text buffer; `failed` latches an allocation failure so callers check once at the end. */
typedef struct strbuf {
  char *p;
  size_t len, cap;
  bool failed;
} strbuf;

/* Room for n more bytes and a NUL. */
static bool sb_reserve(strbuf *b, size_t n) {
  if (b->failed) return false;
  if (b->len + n + 1 <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + n + 1) cap *= 2;
  char *p = (char *)realloc(b->p, cap);
  if (!p) return !(b->failed = true);
  b->p = p;
  b->cap = cap;
  return true;
}

static void sb_bytes(strbuf *b, const char *s, size_t n) {
  if (!sb_reserve(b, n)) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_vappend(strbuf *b, const char *fmt, va_list ap) {
  va_list measure;
  va_copy(measure, ap);
  int n = vsnprintf(NULL, 0, fmt, measure);
  va_end(measure);
  if (n < 0) b->failed = true;
  if (n < 0 || !sb_reserve(b, (size_t)n)) return;
  vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
  b->len += (size_t)n;
}

static void sb_printf(strbuf *b, const char *fmt, ...) DRL_PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sb_vappend(b, fmt, ap);
  va_end(ap);
}

/* Hands the text to the caller, or reports the allocation failure. */
static drl_status sb_finish(strbuf *b, char **text) {
  if (b->failed || !b->p) {
    free(b->p);
    *text = NULL;
    return DRL_FAIL(DRL_ERR_OOM, "out of memory while printing the configuration");
  }
  *text = b->p;
  return DRL_OK;
}

static int ascii_casecmp(const char *a, const char *b) {
  for (;; ++a, ++b) {
    int ca = (unsigned char)*a, cb = (unsigned char)*b;
    if (ca >= 'A' && ca <= 'Z') ca += 'a' - 'A';
    if (cb >= 'A' && cb <= 'Z') cb += 'a' - 'A';
    if (ca != cb || !ca) return ca - cb;
  }
}

static void *member(drl_config *cfg, const key_info *k) { return (char *)cfg + k->offset; }
static const void *cmember(const drl_config *cfg, const key_info *k) { return (const char *)cfg + k->offset; }

static int list_count(const drl_config *cfg, const key_info *k) {
  int n;
  memcpy(&n, cmember(cfg, k), sizeof n);
  return n;
}
static int list_item(const drl_config *cfg, const key_info *k, int i) {
  int v;
  memcpy(&v, (const char *)cmember(cfg, k) + k->items_offset + (size_t)i * sizeof(int), sizeof v);
  return v;
}

static const char *enum_name(const key_info *k, int v) {
  for (int i = 0; i < k->n_names; ++i)
    if (k->names[i].val == v) return k->names[i].str;
  return NULL;
}

/* "cpu, cuda" */
static void names_list(const key_info *k, char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (int i = 0; i < k->n_names && n < cap; ++i) {
    int w = snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", k->names[i].str);
    if (w < 0) break;
    n += (size_t)w;
  }
}

/* The keys of a section, for "unknown key" messages. */
static void section_keys_list(int sec, char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < N_KEYS && n < cap; ++i) {
    if (keys[i].section != sec) continue;
    int w = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", keys[i].name);
    if (w < 0) break;
    n += (size_t)w;
  }
}

static void sections_list(char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (int s = 0; s < N_SECTIONS && n < cap; ++s) {
    int w = snprintf(buf + n, cap - n, "%s%s", s ? ", " : "", sections[s].name);
    if (w < 0) break;
    n += (size_t)w;
  }
}

/* Edit distance, to suggest the key a typo meant. */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return 64;
  size_t row[64];
  for (size_t j = 0; j <= lb; ++j) row[j] = j;
  for (size_t i = 1; i <= la; ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; ++j) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

static int find_section(const char *name) {
  for (int s = 0; s < N_SECTIONS; ++s)
    if (strcmp(sections[s].name, name) == 0) return s;
  return -1;
}

static const key_info *find_key(int sec, const char *name) {
  for (size_t i = 0; i < N_KEYS; ++i)
    if (keys[i].section == sec && strcmp(keys[i].name, name) == 0) return &keys[i];
  return NULL;
}

/* Messages about unknown names: what is allowed, and the nearest allowed name when it is a likely typo. */
static void unknown_section_msg(const char *name, char *buf, size_t cap) {
  char list[512];
  sections_list(list, sizeof list);
  const char *best = NULL;
  size_t best_d = 3;
  for (int s = 0; s < N_SECTIONS; ++s) {
    size_t d = edit_distance(name, sections[s].name);
    if (d < best_d) best_d = d, best = sections[s].name;
  }
  snprintf(buf, cap, "unknown section '%.64s'%s%s%s; sections: %s", name, best ? " (did you mean '" : "",
           best ? best : "", best ? "'?)" : "", list);
}

static void unknown_key_msg(int sec, const char *name, char *buf, size_t cap) {
  char list[1024];
  section_keys_list(sec, list, sizeof list);
  const char *best = NULL;
  size_t best_d = 3;
  for (size_t i = 0; i < N_KEYS; ++i) {
    if (keys[i].section != sec) continue;
    size_t d = edit_distance(name, keys[i].name);
    if (d < best_d) best_d = d, best = keys[i].name;
  }
  snprintf(buf, cap, "unknown key '%s.%.64s'%s%s%s; keys of section '%s': %s", sections[sec].name, name,
           best ? " (did you mean '" : "", best ? best : "", best ? "'?)" : "", sections[sec].name, list);
}

/* "integer in [1, 65536]" and friends, for messages and help. */
static void range_text(const key_info *k, char *buf, size_t cap) {
  switch (k->kind) {
    case K_U64: snprintf(buf, cap, "[0, %llu]", (unsigned long long)UINT64_MAX); return;
    case K_INT:
    case K_REAL:
      snprintf(buf, cap, "%c%.17g, %.17g%c", k->lo_open ? '(' : '[', k->lo, k->hi, k->hi_open ? ')' : ']');
      return;
    default: buf[0] = '\0'; return;
  }
}

static void type_text(const key_info *k, char *buf, size_t cap) {
  char list[256], range[96];
  range_text(k, range, sizeof range);
  switch (k->kind) {
    case K_U64: snprintf(buf, cap, "an unsigned 64-bit integer"); return;
    case K_INT: snprintf(buf, cap, "an integer in %s", range); return;
    case K_REAL: snprintf(buf, cap, "a number in %s", range); return;
    case K_BOOL: snprintf(buf, cap, "true or false"); return;
    case K_STR:
      snprintf(buf, cap, "a string%s", k->lo > 0 ? " (not empty)" : "");
      return;
    case K_ENUM:
      names_list(k, list, sizeof list);
      snprintf(buf, cap, "one of: %s", list);
      return;
    case K_LIST:
      names_list(k, list, sizeof list);
      snprintf(buf, cap, "a list of distinct values from: %s", list);
      return;
  }
  buf[0] = '\0';
}

/* A value quoted for a message: cut short and with control characters shown as '?'. */
static void quote_for_msg(const char *s, size_t len, char *buf, size_t cap) {
  size_t n = 0, i = 0, limit = cap - 6; /* room for "...", the closing quote and the NUL */
  buf[n++] = '\'';
  for (; i < len && n < limit; ++i) {
    unsigned char c = (unsigned char)s[i];
    buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (i < len) {
    memcpy(buf + n, "...", 3);
    n += 3;
  }
  buf[n++] = '\'';
  buf[n] = '\0';
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Reading one value: shared by the YAML pre-check and --set, so both accept exactly the same spellings           */
/* ------------------------------------------------------------------------------------------------------------ */

typedef struct value {
  uint64_t u;
  long long i;
  double f;
  bool b;
  int e;
  const char *s; /* K_STR: points into the caller's text */
  size_t s_len;
} value;

/* Decimal digits only: no sign, no leading zeros (libcyaml would read "010" as octal), no '_' or '.'. */
static bool is_decimal(const char *s, size_t len, bool allow_sign) {
  size_t i = 0;
  if (allow_sign && len > 0 && (s[0] == '-' || s[0] == '+')) i = 1;
  if (i == len) return false;
  if (s[i] == '0' && len - i > 1) return false;
  for (; i < len; ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

/* Parses text as key k's type. `plain`: an unquoted YAML scalar, where ~ and null mean null. On failure writes the
 * reason (after "key.path: ") into why. */
static bool parse_value(const key_info *k, const char *s, size_t len, bool plain, value *out, char *why,
                        size_t cap) {
  char type[512], shown[96];
  type_text(k, type, sizeof type);
  quote_for_msg(s, len, shown, sizeof shown);
  memset(out, 0, sizeof *out);
  bool is_null = plain && (len == 0 || (len == 1 && s[0] == '~') ||
                           (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4))));
  if (is_null && !(k->kind == K_STR && len == 0)) {
    snprintf(why, cap, "expected %s, got an empty value%s", type,
             k->kind == K_STR ? " (write \"\" for an empty string)" : "");
    return false;
  }
  char num[64];
  if (k->kind == K_U64 || k->kind == K_INT || k->kind == K_REAL) {
    if (len >= sizeof num) {
      snprintf(why, cap, "expected %s, got %s", type, shown);
      return false;
    }
    memcpy(num, s, len);
    num[len] = '\0';
  }
  switch (k->kind) {
    case K_U64: {
      if (!is_decimal(s, len, false)) break;
      errno = 0;
      out->u = (uint64_t)strtoull(num, NULL, 10);
      if (errno == ERANGE) break;
      return true;
    }
    case K_INT: {
      if (!is_decimal(s, len, true)) {
        size_t d = (len > 0 && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
        bool digits = len > d + 1 && s[d] == '0';
        for (size_t i = d; digits && i < len; ++i) digits = s[i] >= '0' && s[i] <= '9';
        if (digits) {
          snprintf(why, cap, "expected %s, got %s (no leading zeros: YAML 1.1 reads them as octal)", type, shown);
          return false;
        }
        break;
      }
      errno = 0;
      out->i = strtoll(num, NULL, 10);
      if (errno == ERANGE) {
        char range[96];
        range_text(k, range, sizeof range);
        snprintf(why, cap, "%s is out of range %s", shown, range);
        return false;
      }
      return true;
    }
    case K_REAL: {
      if (len == 0) break;
      char *end = NULL;
      errno = 0;
      out->f = strtod(num, &end);
      if (end != num + len) break;
      /* Overflow and underflow to zero are refused; a subnormal result (also ERANGE in glibc) is exact enough. */
      if (!isfinite(out->f) || (errno == ERANGE && (out->f == 0.0 || fabs(out->f) == HUGE_VAL))) {
        snprintf(why, cap, "%s is not a finite number a double can hold", shown);
        return false;
      }
      return true;
    }
    case K_BOOL: {
      static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
      if (len > 5) break;
      memcpy(num, s, len);
      num[len] = '\0';
      for (int i = 0; i < 3; ++i) {
        if (!ascii_casecmp(num, yes[i])) return out->b = true, true;
        if (!ascii_casecmp(num, no[i])) return out->b = false, true;
      }
      break;
    }
    case K_STR:
      if (memchr(s, '\0', len)) {
        snprintf(why, cap, "the string contains a NUL character");
        return false;
      }
      out->s = s;
      out->s_len = len;
      return true;
    case K_ENUM:
    case K_LIST:
      for (int i = 0; i < k->n_names; ++i)
        if (strlen(k->names[i].str) == len && !memcmp(k->names[i].str, s, len)) {
          out->e = (int)k->names[i].val;
          return true;
        }
      {
        char list[256];
        names_list(k, list, sizeof list);
        snprintf(why, cap, "%s is not one of: %s", shown, list);
      }
      return false;
  }
  snprintf(why, cap, "expected %s, got %s", type, shown);
  return false;
}

/* Range of a parsed value. The value is shown in its shortest exact form. */
static void format_real(double v, char *buf, size_t cap);
static bool check_value(const key_info *k, const value *v, char *why, size_t cap) {
  char range[96], shown[64];
  range_text(k, range, sizeof range);
  switch (k->kind) {
    case K_INT:
    case K_REAL: {
      double x = k->kind == K_INT ? (double)v->i : v->f;
      bool ok = (k->lo_open ? x > k->lo : x >= k->lo) && (k->hi_open ? x < k->hi : x <= k->hi);
      if (ok) return true;
      if (k->kind == K_INT)
        snprintf(shown, sizeof shown, "%lld", v->i);
      else
        format_real(v->f, shown, sizeof shown);
      snprintf(why, cap, "%s is out of range %s", shown, range);
      return false;
    }
    case K_STR:
      if (v->s_len > (size_t)k->hi) {
        snprintf(why, cap, "the string is %zu bytes long; at most %d are allowed", v->s_len, (int)k->hi);
        return false;
      }
      if (v->s_len < (size_t)k->lo) {
        snprintf(why, cap, "must not be empty");
        return false;
      }
      return true;
    default: return true;
  }
}

/* Stores a checked value into cfg (lists are stored item by item by their callers). */
static void store_value(drl_config *cfg, const key_info *k, const value *v) {
  void *p = member(cfg, k);
  switch (k->kind) {
    case K_U64: memcpy(p, &v->u, sizeof v->u); break;
    case K_INT: {
      int x = (int)v->i;
      memcpy(p, &x, sizeof x);
    } break;
    case K_REAL: memcpy(p, &v->f, sizeof v->f); break;
    case K_BOOL: *(bool *)p = v->b; break;
    case K_STR:
      memcpy(p, v->s, v->s_len);
      ((char *)p)[v->s_len] = '\0';
      break;
    case K_ENUM: memcpy(p, &v->e, sizeof v->e); break;
    case K_LIST: break;
  }
}

static void store_list(drl_config *cfg, const key_info *k, const int *items, int n) {
  char *p = (char *)member(cfg, k);
  memcpy(p, &n, sizeof n);
  memset(p + k->items_offset, 0, (size_t)k->n_names * sizeof(int));
  memcpy(p + k->items_offset, items, (size_t)n * sizeof(int));
}

/* A list's own rules: at least one entry, no repeats. */
static bool check_list(const key_info *k, const int *items, int n, char *why, size_t cap) {
  char list[256];
  names_list(k, list, sizeof list);
  if (n < 1) {
    snprintf(why, cap, "the list is empty; give at least one of: %s", list);
    return false;
  }
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j)
      if (items[i] == items[j]) {
        snprintf(why, cap, "'%s' appears more than once; each of %s may appear at most once", enum_name(k, items[i]),
                 list);
        return false;
      }
  return true;
}

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
static drl_status walk_value(walker *w, const key_info *k) {
  char why[1024], type[512];
  value v;
  const char *sec = sections[k->section].name;
  if (w->ev.type == YAML_ALIAS_EVENT) return DRL_OK; /* see ALIASES below */
  if (k->kind != K_LIST) {
    if (w->ev.type != YAML_SCALAR_EVENT) {
      type_text(k, type, sizeof type);
      return walk_fail(w, &w->ev.start_mark, "%s.%s: expected %s, got %s", sec, k->name, type,
                       event_noun(&w->ev));
    }
    const char *s = (const char *)w->ev.data.scalar.value;
    size_t len = w->ev.data.scalar.length;
    if (!parse_value(k, s, len, scalar_is_plain(&w->ev), &v, why, sizeof why) ||
        !check_value(k, &v, why, sizeof why))
      return walk_fail(w, &w->ev.start_mark, "%s.%s: %s", sec, k->name, why);
    return DRL_OK;
  }
  if (w->ev.type != YAML_SEQUENCE_START_EVENT) {
    type_text(k, type, sizeof type);
    char shown[96] = "";
    if (w->ev.type == YAML_SCALAR_EVENT)
      quote_for_msg((const char *)w->ev.data.scalar.value, w->ev.data.scalar.length, shown, sizeof shown);
    return walk_fail(w, &w->ev.start_mark, "%s.%s: expected %s, written [a, b], got %s%s%s", sec, k->name, type,
                     event_noun(&w->ev), shown[0] ? " " : "", shown);
  }
  yaml_mark_t start = w->ev.start_mark;
  int items[MAX_ENUM_VALUES + 1], n = 0;
  for (;;) {
    DRL_TRY(walk_next(w));
    if (w->ev.type == YAML_SEQUENCE_END_EVENT) break;
    if (w->ev.type == YAML_ALIAS_EVENT) continue;
    if (w->ev.type != YAML_SCALAR_EVENT) {
      type_text(k, type, sizeof type);
      return walk_fail(w, &w->ev.start_mark, "%s.%s: expected %s, got %s inside the list", sec, k->name, type,
                       event_noun(&w->ev));
    }
    if (!parse_value(k, (const char *)w->ev.data.scalar.value, w->ev.data.scalar.length, scalar_is_plain(&w->ev),
                     &v, why, sizeof why))
      return walk_fail(w, &w->ev.start_mark, "%s.%s: %s", sec, k->name, why);
    for (int j = 0; j < n; ++j)
      if (items[j] == v.e) {
        items[n] = v.e;
        check_list(k, items, n + 1, why, sizeof why);
        return walk_fail(w, &w->ev.start_mark, "%s.%s: %s", sec, k->name, why);
      }
    items[n++] = v.e; /* distinct values of the enum: n stays <= n_names <= MAX_ENUM_VALUES */
  }
  if (!check_list(k, items, n, why, sizeof why)) return walk_fail(w, &start, "%s.%s: %s", sec, k->name, why);
  return DRL_OK;
}

/* One section's mapping; the current event is its MAPPING_START. */
static drl_status walk_section(walker *w, int sec) {
  size_t seen_line[sizeof keys / sizeof keys[0]] = {0}; /* 1-based line of each key seen, 0 = not yet */
  char msg[1536];
  for (;;) {
    DRL_TRY(walk_next(w));
    if (w->ev.type == YAML_MAPPING_END_EVENT) return DRL_OK;
    if (w->ev.type != YAML_SCALAR_EVENT)
      return walk_fail(w, &w->ev.start_mark, "section '%s': expected a key name, got %s", sections[sec].name,
                       event_noun(&w->ev));
    const char *name = (const char *)w->ev.data.scalar.value;
    const key_info *k = find_key(sec, name);
    if (!k) {
      unknown_key_msg(sec, name, msg, sizeof msg);
      return walk_fail(w, &w->ev.start_mark, "%s", msg);
    }
    size_t idx = (size_t)(k - keys);
    if (seen_line[idx])
      return walk_fail(w, &w->ev.start_mark, "%s.%s is given twice (first at line %zu)", sections[sec].name,
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
    sections_list(list, sizeof list);
    if (e->type == YAML_SCALAR_EVENT)
      quote_for_msg((const char *)e->data.scalar.value, e->data.scalar.length, shown, sizeof shown);
    return walk_fail(w, &e->start_mark,
                     "not a dynrl config: the top level must map section names (%s) to keys, got %s%s%s", list,
                     event_noun(e), shown[0] ? " " : "", shown);
  } else {
    size_t seen_line[N_SECTIONS] = {0};
    for (;;) {
      DRL_TRY(walk_next(w));
      if (w->ev.type == YAML_MAPPING_END_EVENT) break;
      if (w->ev.type != YAML_SCALAR_EVENT)
        return walk_fail(w, &w->ev.start_mark, "expected a section name, got %s", event_noun(&w->ev));
      int sec = find_section((const char *)w->ev.data.scalar.value);
      if (sec < 0) {
        unknown_section_msg((const char *)w->ev.data.scalar.value, msg, sizeof msg);
        return walk_fail(w, &w->ev.start_mark, "%s", msg);
      }
      if (seen_line[sec])
        return walk_fail(w, &w->ev.start_mark, "section '%s' is given twice (first at line %zu)",
                         sections[sec].name, seen_line[sec]);
      seen_line[sec] = w->ev.start_mark.line + 1;
      DRL_TRY(walk_next(w));
      if (w->ev.type == YAML_ALIAS_EVENT) {
        w->any_section = true;
        continue;
      }
      if (w->ev.type == YAML_SCALAR_EVENT && scalar_is_plain(&w->ev) && w->ev.data.scalar.length == 0)
        return walk_fail(w, &w->ev.start_mark, "section '%s' is empty: remove it or write '%s: {}'",
                         sections[sec].name, sections[sec].name);
      if (w->ev.type != YAML_MAPPING_START_EVENT)
        return walk_fail(w, &w->ev.start_mark, "section '%s': expected a mapping of keys, got %s",
                         sections[sec].name, event_noun(&w->ev));
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
  void *slot[N_KEYS];      /* slot[i]: keys[i]'s value, allocated by libcyaml, NULL when absent */
  uint32_t count[N_KEYS];  /* LIST: number of items */
} raw_section;

typedef struct raw_top {
  raw_section *section[N_SECTIONS];
} raw_top;

typedef struct schema {
  cyaml_schema_field_t fields[N_KEYS + N_SECTIONS]; /* each section's keys, then a terminator */
  cyaml_schema_value_t entries[N_KEYS];             /* LIST: the item schema */
  cyaml_schema_field_t top_fields[N_SECTIONS + 1];
  cyaml_schema_value_t top;
} schema;

/* Filled per load on the caller's stack: no global mutable state, so loading is thread-safe. */
static void build_schema(schema *sc) {
  memset(sc, 0, sizeof *sc);
  size_t f = 0;
  for (int s = 0; s < N_SECTIONS; ++s) {
    cyaml_schema_field_t *tf = &sc->top_fields[s];
    tf->key = sections[s].name;
    tf->data_offset = (uint32_t)(offsetof(raw_top, section) + (size_t)s * sizeof(raw_section *));
    tf->value.type = CYAML_MAPPING;
    tf->value.flags = (enum cyaml_flag)(CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL);
    tf->value.data_size = sizeof(raw_section);
    tf->value.mapping.fields = &sc->fields[f];
    for (size_t i = 0; i < N_KEYS; ++i) {
      const key_info *k = &keys[i];
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
  for (size_t i = 0; i < N_KEYS; ++i) {
    const key_info *k = &keys[i];
    const raw_section *rs = raw->section[k->section];
    if (!rs || !rs->slot[i]) continue;
    const void *src = rs->slot[i];
    switch (k->kind) {
      case K_STR: {
        size_t len = strlen((const char *)src); /* <= STR_CAP - 1: checked by both passes */
        memcpy(member(cfg, k), src, len + 1);
      } break;
      case K_LIST: {
        int n = (int)rs->count[i];
        if (n < 1 || n > k->n_names) continue;
        store_list(cfg, k, (const int *)src, n);
      } break;
      default: memcpy(member(cfg, k), src, k->size); break;
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
  bool present[N_KEYS] = {false};
  drl_status st = load_over(&tmp, default_yaml, strlen(default_yaml), "embedded default config", present);
  if (st != DRL_OK) return drl_fail_context(DRL_ERR_INTERNAL, "the embedded default config does not load");
  /* The default text is the one source of defaults: every key must be in it. */
  for (size_t i = 0; i < N_KEYS; ++i)
    if (!present[i])
      return DRL_FAIL(DRL_ERR_INTERNAL, "the embedded default config lacks %s.%s", sections[keys[i].section].name,
                      keys[i].name);
  st = drl_config_validate(&tmp);
  if (st != DRL_OK) return drl_fail_context(DRL_ERR_INTERNAL, "the embedded default config is invalid");
  *cfg = tmp;
  return DRL_OK;
}

static drl_status load_text(drl_config *cfg, const char *text, size_t len, const char *origin) {
  drl_config tmp;
  DRL_TRY(drl_config_load_default(&tmp));
  bool present[N_KEYS] = {false};
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
  strbuf b = {0};
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= MAX_CONFIG_BYTES)
    sb_bytes(&b, chunk, n);
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

/* ------------------------------------------------------------------------------------------------------------ */
/* Public: overrides                                                                                              */
/* ------------------------------------------------------------------------------------------------------------ */

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void trim(const char **s, size_t *len) {
  while (*len && is_space(**s)) ++*s, --*len;
  while (*len && is_space((*s)[*len - 1])) --*len;
}

/* Strings from the command line may be any bytes; YAML text must be UTF-8 to print them back. Returns the number of
 * bytes of the UTF-8 sequence at p (1..4) and its code point, or 0 when the bytes are not UTF-8. */
static size_t utf8_decode(const unsigned char *p, size_t avail, unsigned *cp) {
  unsigned c = p[0], min;
  size_t n;
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if (c >= 0xc2 && c <= 0xdf)
    n = 1, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef)
    n = 2, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 3, min = 0x10000;
  else
    return 0;
  if (avail <= n) return 0;
  unsigned v = c & (0x3fu >> n);
  for (size_t j = 1; j <= n; ++j) {
    if ((p[j] & 0xc0) != 0x80) return 0;
    v = (v << 6) | (p[j] & 0x3fu);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  *cp = v;
  return n + 1;
}

static bool valid_utf8(const char *s, size_t len) {
  unsigned cp;
  for (size_t i = 0, n; i < len; i += n)
    if (!(n = utf8_decode((const unsigned char *)s + i, len - i, &cp))) return false;
  return true;
}

drl_status drl_config_set(drl_config *cfg, const char *assignment) {
  if (!cfg || !assignment) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_set: cfg or assignment is NULL");
  char shown[160], why[1536];
  quote_for_msg(assignment, strlen(assignment), shown, sizeof shown);
  const char *eq = strchr(assignment, '=');
  const char *dot = eq ? memchr(assignment, '.', (size_t)(eq - assignment)) : NULL;
  if (!eq || !dot)
    return DRL_FAIL(DRL_ERR_CONFIG, "override %s: expected section.key=value (e.g. model.d_model=256)", shown);
  const char *sec_name = assignment;
  size_t sec_len = (size_t)(dot - assignment);
  const char *key_name = dot + 1;
  size_t key_len = (size_t)(eq - key_name);
  trim(&sec_name, &sec_len);
  trim(&key_name, &key_len);
  char sec_buf[64], key_buf[64];
  if (sec_len >= sizeof sec_buf || key_len >= sizeof key_buf)
    return DRL_FAIL(DRL_ERR_CONFIG, "override %s: no such key", shown);
  memcpy(sec_buf, sec_name, sec_len);
  sec_buf[sec_len] = '\0';
  memcpy(key_buf, key_name, key_len);
  key_buf[key_len] = '\0';
  int sec = find_section(sec_buf);
  if (sec < 0) {
    unknown_section_msg(sec_buf, why, sizeof why);
    return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s", shown, why);
  }
  const key_info *k = find_key(sec, key_buf);
  if (!k) {
    unknown_key_msg(sec, key_buf, why, sizeof why);
    return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s", shown, why);
  }

  const char *val = eq + 1;
  size_t len = strlen(val);
  value v;
  if (k->kind == K_STR) { /* verbatim: the shell already did the quoting */
    if (!valid_utf8(val, len))
      return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s.%s: the string is not valid UTF-8", shown, sec_buf, key_buf);
  } else {
    trim(&val, &len);
  }
  if (k->kind == K_LIST) { /* "a,b", "a, b" or "[a, b]" */
    if (len >= 2 && val[0] == '[' && val[len - 1] == ']') {
      ++val;
      len -= 2;
      trim(&val, &len);
    }
    int items[MAX_ENUM_VALUES + 1], n = 0;
    for (size_t pos = 0; len > 0 && pos <= len;) {
      const char *comma = memchr(val + pos, ',', len - pos);
      size_t end = comma ? (size_t)(comma - val) : len;
      const char *item = val + pos;
      size_t item_len = end - pos;
      trim(&item, &item_len);
      if (!parse_value(k, item, item_len, false, &v, why, sizeof why))
        return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s.%s: %s", shown, sec_buf, key_buf, why);
      items[n++] = v.e;
      if (!check_list(k, items, n, why, sizeof why)) /* a repeat: stop before items[] can fill up */
        return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s.%s: %s", shown, sec_buf, key_buf, why);
      pos = end + 1;
    }
    if (!check_list(k, items, n, why, sizeof why))
      return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s.%s: %s", shown, sec_buf, key_buf, why);
    store_list(cfg, k, items, n);
    return DRL_OK;
  }
  if (!parse_value(k, val, len, false, &v, why, sizeof why) || !check_value(k, &v, why, sizeof why))
    return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s.%s: %s", shown, sec_buf, key_buf, why);
  store_value(cfg, k, &v);
  return DRL_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Public: validation                                                                                             */
/* ------------------------------------------------------------------------------------------------------------ */

/* Reads key k of cfg into a value, for the same checks a file gets. */
static bool read_member(const drl_config *cfg, const key_info *k, value *v, char *why, size_t cap) {
  const void *p = cmember(cfg, k);
  memset(v, 0, sizeof *v);
  switch (k->kind) {
    case K_U64: memcpy(&v->u, p, sizeof v->u); return true;
    case K_INT: {
      int x;
      memcpy(&x, p, sizeof x);
      v->i = x;
      return true;
    }
    case K_REAL:
      memcpy(&v->f, p, sizeof v->f);
      if (!isfinite(v->f)) {
        snprintf(why, cap, "%s is not a finite number", isnan(v->f) ? "nan" : "inf");
        return false;
      }
      return true;
    case K_BOOL: {
      unsigned char byte;
      memcpy(&byte, p, 1);
      if (byte > 1) {
        snprintf(why, cap, "holds %u, not a bool", byte);
        return false;
      }
      return true;
    }
    case K_STR: {
      const char *s = (const char *)p;
      v->s = s;
      const char *nul = (const char *)memchr(s, '\0', DRL_CONFIG_STR_CAP);
      v->s_len = nul ? (size_t)(nul - s) : DRL_CONFIG_STR_CAP;
      if (!nul) {
        snprintf(why, cap, "the string is not NUL-terminated within %d bytes", DRL_CONFIG_STR_CAP);
        return false;
      }
      if (!valid_utf8(s, v->s_len)) {
        snprintf(why, cap, "the string is not valid UTF-8");
        return false;
      }
      return true;
    }
    case K_ENUM:
      memcpy(&v->e, p, sizeof v->e);
      if (!enum_name(k, v->e)) {
        char list[256];
        names_list(k, list, sizeof list);
        snprintf(why, cap, "holds %d, which is none of: %s", v->e, list);
        return false;
      }
      return true;
    case K_LIST: {
      int n = list_count(cfg, k), items[MAX_ENUM_VALUES];
      if (n < 0 || n > k->n_names) {
        snprintf(why, cap, "count %d is outside [1, %d]", n, k->n_names);
        return false;
      }
      for (int i = 0; i < n; ++i) {
        items[i] = list_item(cfg, k, i);
        if (!enum_name(k, items[i])) {
          snprintf(why, cap, "item %d holds %d, which is not a valid value", i, items[i]);
          return false;
        }
      }
      return check_list(k, items, n, why, cap);
    }
  }
  return true;
}

drl_status drl_config_validate(const drl_config *cfg) {
  if (!cfg) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_validate: cfg is NULL");
  char why[1024];
  for (size_t i = 0; i < N_KEYS; ++i) {
    const key_info *k = &keys[i];
    value v;
    if (!read_member(cfg, k, &v, why, sizeof why) || !check_value(k, &v, why, sizeof why))
      return DRL_FAIL(DRL_ERR_CONFIG, "%s.%s: %s", sections[k->section].name, k->name, why);
  }
  /* Rules between keys. */
  const drl_config_model *m = &cfg->model;
  if (m->d_model % m->n_heads != 0)
    return DRL_FAIL(DRL_ERR_CONFIG, "model.d_model (%d) must be a multiple of model.n_heads (%d)", m->d_model,
                    m->n_heads);
  if ((m->d_model / m->n_heads) % 2 != 0)
    return DRL_FAIL(DRL_ERR_CONFIG,
                    "the head size model.d_model / model.n_heads = %d / %d = %d must be even (RoPE rotates pairs)",
                    m->d_model, m->n_heads, m->d_model / m->n_heads);
  if (m->n_heads % m->n_kv_heads != 0)
    return DRL_FAIL(DRL_ERR_CONFIG, "model.n_heads (%d) must be a multiple of model.n_kv_heads (%d)", m->n_heads,
                    m->n_kv_heads);
  if (m->ffn == DRL_CFG_FFN_MOE && cfg->moe.top_k > cfg->moe.experts)
    return DRL_FAIL(DRL_ERR_CONFIG, "moe.top_k (%d) must not exceed moe.experts (%d)", cfg->moe.top_k,
                    cfg->moe.experts);
  if (m->ffn == DRL_CFG_FFN_MOE && cfg->moe.d_expert == 0 && m->d_ff < cfg->moe.top_k)
    return DRL_FAIL(DRL_ERR_CONFIG, "moe.d_expert = 0 means model.d_ff / moe.top_k, which is 0 for d_ff %d, top_k %d",
                    m->d_ff, cfg->moe.top_k);
  const drl_config_d3s *d = &cfg->d3s;
  if (d->sampling != DRL_CFG_SAMPLING_NONE && (d->n_init > cfg->grpo.group_size || d->n_final > cfg->grpo.group_size))
    return DRL_FAIL(DRL_ERR_CONFIG, "d3s.n_init (%d) and d3s.n_final (%d) must not exceed grpo.group_size (%d)",
                    d->n_init, d->n_final, cfg->grpo.group_size);
  return DRL_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Public: printing, comparing, help                                                                              */
/* ------------------------------------------------------------------------------------------------------------ */

/* The shortest text that strtod reads back to the same double, written so every YAML reader sees a float:
 * 0.001, 1.0e-05, 10000.0. */
static void format_real(double v, char *buf, size_t cap) {
  char tmp[40];
  for (int prec = 1; prec <= 17; ++prec) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v) break;
  }
  if (!isfinite(v)) {
    snprintf(buf, cap, "%s", tmp);
    return;
  }
  if (v == floor(v) && fabs(v) < 1e15) { /* integral: plain digits and ".0" */
    snprintf(buf, cap, "%.1f", v);
    return;
  }
  char *e = strchr(tmp, 'e');
  if (e && !memchr(tmp, '.', (size_t)(e - tmp)))
    snprintf(buf, cap, "%.*s.0%s", (int)(e - tmp), tmp, e);
  else
    snprintf(buf, cap, "%s", tmp);
}

/* Strings print plain when every YAML reader takes them back as the same string: a letter, '_' or '/' first (so
 * never a number), then [A-Za-z0-9_./-], and not a word YAML 1.1 resolves to null or a bool. */
static bool plain_ok(const char *s) {
  char c = s[0];
  if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '/')) return false;
  for (const char *p = s + 1; *p; ++p) {
    c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '/' ||
          c == '.' || c == '-'))
      return false;
  }
  static const char *const words[] = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf"};
  for (size_t i = 0; i < sizeof words / sizeof words[0]; ++i)
    if (!ascii_casecmp(s, words[i])) return false;
  return true;
}

/* Double-quoted with escapes for what a YAML reader would not take raw: quotes, backslashes, control characters
 * (C0, DEL, C1) and the non-characters U+FFFE/U+FFFF. Other UTF-8 passes through. */
static void print_string(strbuf *b, const char *s) {
  if (plain_ok(s)) {
    sb_printf(b, "%s", s);
    return;
  }
  sb_bytes(b, "\"", 1);
  const unsigned char *p = (const unsigned char *)s;
  size_t len = strlen(s);
  for (size_t i = 0, n; i < len; i += n) {
    unsigned cp;
    n = utf8_decode(p + i, len - i, &cp);
    if (n == 0) { /* not UTF-8 (validate rejects it): keep the byte visible as U+00XX */
      sb_printf(b, "\\x%02x", p[i]);
      n = 1;
    } else if (cp == '"' || cp == '\\') {
      sb_printf(b, "\\%c", (char)cp);
    } else if (cp == '\n') {
      sb_printf(b, "\\n");
    } else if (cp == '\t') {
      sb_printf(b, "\\t");
    } else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
      sb_printf(b, "\\x%02x", cp);
    } else if (cp == 0xfffe || cp == 0xffff) {
      sb_printf(b, "\\u%04x", cp);
    } else {
      sb_bytes(b, (const char *)p + i, n);
    }
  }
  sb_bytes(b, "\"", 1);
}

static void print_value(strbuf *b, const drl_config *cfg, const key_info *k) {
  const void *p = cmember(cfg, k);
  switch (k->kind) {
    case K_U64: {
      uint64_t u;
      memcpy(&u, p, sizeof u);
      sb_printf(b, "%llu", (unsigned long long)u);
    } break;
    case K_INT: {
      int x;
      memcpy(&x, p, sizeof x);
      sb_printf(b, "%d", x);
    } break;
    case K_REAL: {
      double x;
      char num[48];
      memcpy(&x, p, sizeof x);
      format_real(x, num, sizeof num);
      sb_printf(b, "%s", num);
    } break;
    case K_BOOL: sb_printf(b, "%s", *(const unsigned char *)p ? "true" : "false"); break;
    case K_STR: print_string(b, (const char *)p); break;
    case K_ENUM: {
      int e;
      memcpy(&e, p, sizeof e);
      const char *name = enum_name(k, e);
      if (name)
        sb_printf(b, "%s", name);
      else
        sb_printf(b, "%d", e); /* invalid: loads back as an error, not as something else */
    } break;
    case K_LIST: {
      int n = list_count(cfg, k);
      if (n < 0) n = 0;
      if (n > k->n_names) n = k->n_names;
      sb_printf(b, "[");
      for (int i = 0; i < n; ++i) {
        const char *name = enum_name(k, list_item(cfg, k, i));
        if (name)
          sb_printf(b, "%s%s", i ? ", " : "", name);
        else
          sb_printf(b, "%s%d", i ? ", " : "", list_item(cfg, k, i));
      }
      sb_printf(b, "]");
    } break;
  }
}

drl_status drl_config_to_yaml(const drl_config *cfg, char **text) {
  if (!cfg || !text) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_to_yaml: cfg or text is NULL");
  strbuf b = {0};
  sb_printf(&b, "%s", YAML_HEADER);
  for (int s = 0; s < N_SECTIONS; ++s) {
    sb_printf(&b, "\n# %s\n%s:\n", sections[s].help, sections[s].name);
    for (size_t i = 0; i < N_KEYS; ++i) {
      if (keys[i].section != s) continue;
      sb_printf(&b, "  # %s\n  %s: ", keys[i].help, keys[i].name);
      print_value(&b, cfg, &keys[i]);
      sb_printf(&b, "\n");
    }
  }
  return sb_finish(&b, text);
}

int drl_config_equal(const drl_config *a, const drl_config *b) {
  if (!a || !b) return a == b;
  for (size_t i = 0; i < N_KEYS; ++i) {
    const key_info *k = &keys[i];
    const void *pa = cmember(a, k), *pb = cmember(b, k);
    switch (k->kind) {
      case K_STR:
        if (strncmp((const char *)pa, (const char *)pb, DRL_CONFIG_STR_CAP) != 0) return 0;
        break;
      case K_LIST: {
        int n = list_count(a, k);
        if (n != list_count(b, k)) return 0;
        if (n < 0 || n > k->n_names) return 0;
        for (int j = 0; j < n; ++j)
          if (list_item(a, k, j) != list_item(b, k, j)) return 0;
      } break;
      case K_BOOL:
        if (!*(const unsigned char *)pa != !*(const unsigned char *)pb) return 0;
        break;
      default: /* integers, enums, and doubles bit for bit */
        if (memcmp(pa, pb, k->size) != 0) return 0;
        break;
    }
  }
  return 1;
}

void drl_config_free(drl_config *cfg) {
  if (cfg) memset(cfg, 0, sizeof *cfg);
}

drl_status drl_config_help(char **text) {
  if (!text) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_help: text is NULL");
  strbuf b = {0};
  size_t width = 0;
  for (size_t i = 0; i < N_KEYS; ++i) {
    size_t w = strlen(sections[keys[i].section].name) + 1 + strlen(keys[i].name);
    if (w > width) width = w;
  }
  for (size_t i = 0; i < N_KEYS; ++i) {
    const key_info *k = &keys[i];
    char path[128], type[512];
    snprintf(path, sizeof path, "%s.%s", sections[k->section].name, k->name);
    type_text(k, type, sizeof type);
    sb_printf(&b, "%-*s  %s (%s; default %s)\n", (int)width, path, k->help, type, k->def);
  }
  return sb_finish(&b, text);
}

#define DRL_CFG_NAME_CASE_(id, str) \
  case id:                          \
    return str;
#define DRL_CFG_DEFINE_NAME_(e)                             \
  const char *drl_cfg_##e##_name(drl_cfg_##e value) {      \
    switch (value) { DRL_CFG_ENUM_##e(DRL_CFG_NAME_CASE_) } \
    return "?";                                             \
  }
DRL_CFG_ENUMS(DRL_CFG_DEFINE_NAME_)
