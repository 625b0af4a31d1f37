/* Configuration: printing as YAML (checkpoints store this text, so its bytes are part of every result), comparing,
 * and the listing of every key. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config_internal.h"

/* ---- text buffers ---- */

/* Room for n more bytes and a NUL. */
static bool sb_reserve(cfg_strbuf *b, size_t n) {
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

void cfg_sb_bytes(cfg_strbuf *b, const char *s, size_t n) {
  if (!sb_reserve(b, n)) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void cfg_sb_printf(cfg_strbuf *b, const char *fmt, ...) {
  va_list ap, measure;
  va_start(ap, fmt);
  va_copy(measure, ap);
  int n = vsnprintf(NULL, 0, fmt, measure);
  va_end(measure);
  if (n < 0) b->failed = true;
  if (n >= 0 && sb_reserve(b, (size_t)n)) {
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    b->len += (size_t)n;
  }
  va_end(ap);
}

/* Hands the text to the caller, or reports the allocation failure. */
static drl_status sb_finish(cfg_strbuf *b, char **text) {
  if (b->failed || !b->p) {
    free(b->p);
    *text = NULL;
    return DRL_FAIL(DRL_ERR_OOM, "out of memory while printing the configuration");
  }
  *text = b->p;
  return DRL_OK;
}

/* ---- values as YAML ---- */

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
    if (!cfg_ascii_casecmp(s, words[i])) return false;
  return true;
}

/* Double-quoted with escapes for what a YAML reader would not take raw: quotes, backslashes, control characters
 * (C0, DEL, C1) and the non-characters U+FFFE/U+FFFF. Other UTF-8 passes through. */
static void print_string(cfg_strbuf *b, const char *s) {
  if (plain_ok(s)) {
    cfg_sb_printf(b, "%s", s);
    return;
  }
  cfg_sb_bytes(b, "\"", 1);
  const unsigned char *p = (const unsigned char *)s;
  size_t len = strlen(s);
  for (size_t i = 0, n; i < len; i += n) {
    unsigned cp;
    n = cfg_utf8_decode(p + i, len - i, &cp);
    if (n == 0) { /* not UTF-8 (validate rejects it): keep the byte visible as U+00XX */
      cfg_sb_printf(b, "\\x%02x", p[i]);
      n = 1;
    } else if (cp == '"' || cp == '\\') {
      cfg_sb_printf(b, "\\%c", (char)cp);
    } else if (cp == '\n') {
      cfg_sb_printf(b, "\\n");
    } else if (cp == '\t') {
      cfg_sb_printf(b, "\\t");
    } else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
      cfg_sb_printf(b, "\\x%02x", cp);
    } else if (cp == 0xfffe || cp == 0xffff) {
      cfg_sb_printf(b, "\\u%04x", cp);
    } else {
      cfg_sb_bytes(b, (const char *)p + i, n);
    }
  }
  cfg_sb_bytes(b, "\"", 1);
}

static void print_value(cfg_strbuf *b, const drl_config *cfg, const cfg_key *k) {
  const void *p = cfg_member(cfg, k);
  switch (k->kind) {
    case K_U64: {
      uint64_t u;
      memcpy(&u, p, sizeof u);
      cfg_sb_printf(b, "%llu", (unsigned long long)u);
    } break;
    case K_INT: {
      int x;
      memcpy(&x, p, sizeof x);
      cfg_sb_printf(b, "%d", x);
    } break;
    case K_REAL: {
      double x;
      char num[48];
      memcpy(&x, p, sizeof x);
      cfg_format_real(x, num, sizeof num);
      cfg_sb_printf(b, "%s", num);
    } break;
    case K_BOOL: cfg_sb_printf(b, "%s", *(const unsigned char *)p ? "true" : "false"); break;
    case K_STR: print_string(b, (const char *)p); break;
    case K_ENUM: {
      int e;
      memcpy(&e, p, sizeof e);
      const char *name = cfg_enum_name(k, e);
      if (name)
        cfg_sb_printf(b, "%s", name);
      else
        cfg_sb_printf(b, "%d", e); /* invalid: loads back as an error, not as something else */
    } break;
    case K_LIST: {
      int n = cfg_list_count(cfg, k);
      if (n < 0) n = 0;
      if (n > k->n_names) n = k->n_names;
      cfg_sb_printf(b, "[");
      for (int i = 0; i < n; ++i) {
        const char *name = cfg_enum_name(k, cfg_list_item(cfg, k, i));
        if (name)
          cfg_sb_printf(b, "%s%s", i ? ", " : "", name);
        else
          cfg_sb_printf(b, "%s%d", i ? ", " : "", cfg_list_item(cfg, k, i));
      }
      cfg_sb_printf(b, "]");
    } break;
  }
}

/* ---- public ---- */

drl_status drl_config_to_yaml(const drl_config *cfg, char **text) {
  if (!cfg || !text) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_to_yaml: cfg or text is NULL");
  cfg_strbuf b = {0};
  cfg_sb_printf(&b, "%s", CFG_YAML_HEADER);
  for (int s = 0; s < CFG_N_SECTIONS; ++s) {
    cfg_sb_printf(&b, "\n# %s\n%s:\n", cfg_sections[s].help, cfg_sections[s].name);
    for (size_t i = 0; i < CFG_N_KEYS; ++i) {
      if (cfg_keys[i].section != s) continue;
      cfg_sb_printf(&b, "  # %s\n  %s: ", cfg_keys[i].help, cfg_keys[i].name);
      print_value(&b, cfg, &cfg_keys[i]);
      cfg_sb_printf(&b, "\n");
    }
  }
  return sb_finish(&b, text);
}

/* 1 when key k holds the same value in a and b. */
static int same_value(const drl_config *a, const drl_config *b, const cfg_key *k) {
  const void *pa = cfg_member(a, k), *pb = cfg_member(b, k);
  switch (k->kind) {
    case K_STR:
      return strncmp((const char *)pa, (const char *)pb, DRL_CONFIG_STR_CAP) == 0;
    case K_LIST: {
      int n = cfg_list_count(a, k);
      if (n != cfg_list_count(b, k) || n < 0 || n > k->n_names) return 0;
      for (int j = 0; j < n; ++j)
        if (cfg_list_item(a, k, j) != cfg_list_item(b, k, j)) return 0;
      return 1;
    }
    case K_BOOL:
      return !*(const unsigned char *)pa == !*(const unsigned char *)pb;
    default: /* integers, enums, and doubles bit for bit */
      return memcmp(pa, pb, k->size) == 0;
  }
}

int drl_config_diff(const drl_config *a, const drl_config *b, char *names, size_t cap) {
  if (names && cap) names[0] = '\0';
  int n = 0;
  size_t used = 0;
  for (size_t i = 0; i < CFG_N_KEYS; ++i) {
    const cfg_key *k = &cfg_keys[i];
    if (same_value(a, b, k)) continue;
    if (names && used < cap) {
      int w = snprintf(names + used, cap - used, "%s%s.%s", n ? ", " : "", cfg_sections[k->section].name, k->name);
      used += w > 0 ? (size_t)w : 0;
    }
    ++n;
  }
  return n;
}

int drl_config_equal(const drl_config *a, const drl_config *b) {
  if (!a || !b) return a == b;
  return drl_config_diff(a, b, NULL, 0) == 0;
}

void drl_config_free(drl_config *cfg) {
  if (cfg) memset(cfg, 0, sizeof *cfg);
}

drl_status drl_config_help(char **text) {
  if (!text) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_help: text is NULL");
  cfg_strbuf b = {0};
  size_t width = 0;
  for (size_t i = 0; i < CFG_N_KEYS; ++i) {
    size_t w = strlen(cfg_sections[cfg_keys[i].section].name) + 1 + strlen(cfg_keys[i].name);
    if (w > width) width = w;
  }
  for (size_t i = 0; i < CFG_N_KEYS; ++i) {
    const cfg_key *k = &cfg_keys[i];
    char path[128], type[512];
    snprintf(path, sizeof path, "%s.%s", cfg_sections[k->section].name, k->name);
    cfg_type_text(k, type, sizeof type);
    cfg_sb_printf(&b, "%-*s  %s (%s; default %s)\n", (int)width, path, k->help, type, k->def);
  }
  return sb_finish(&b, text);
}
