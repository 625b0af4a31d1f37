/* Configuration: one value. Reading it from text is shared by YAML loading and --set, so both accept exactly the
 * same spellings; reading it back from a struct gives validation the same checks. Numbers are read and printed in
 * the C locale's format (a host that calls setlocale(LC_NUMERIC) changes strtod and printf, as it does for every C
 * program). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config_internal.h"

int cfg_ascii_casecmp(const char *a, const char *b) {
  for (;; ++a, ++b) {
    int ca = (unsigned char)*a, cb = (unsigned char)*b;
    if (ca >= 'A' && ca <= 'Z') ca += 'a' - 'A';
    if (cb >= 'A' && cb <= 'Z') cb += 'a' - 'A';
    if (ca != cb || !ca) return ca - cb;
  }
}

static void *member(drl_config *cfg, const cfg_key *k) { return (char *)cfg + k->offset; }
const void *cfg_member(const drl_config *cfg, const cfg_key *k) { return (const char *)cfg + k->offset; }

int cfg_list_count(const drl_config *cfg, const cfg_key *k) {
  int n;
  memcpy(&n, cfg_member(cfg, k), sizeof n);
  return n;
}

int cfg_list_item(const drl_config *cfg, const cfg_key *k, int i) {
  int v;
  memcpy(&v, (const char *)cfg_member(cfg, k) + k->items_offset + (size_t)i * sizeof(int), sizeof v);
  return v;
}

void cfg_quote_for_msg(const char *s, size_t len, char *buf, size_t cap) {
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

/* Strings from the command line may be any bytes; YAML text must be UTF-8 to print them back. */
size_t cfg_utf8_decode(const unsigned char *p, size_t avail, unsigned *cp) {
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

bool cfg_valid_utf8(const char *s, size_t len) {
  unsigned cp;
  for (size_t i = 0, n; i < len; i += n)
    if (!(n = cfg_utf8_decode((const unsigned char *)s + i, len - i, &cp))) return false;
  return true;
}

void cfg_format_real(double v, char *buf, size_t cap) {
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

/* Decimal digits only: no sign, no leading zeros (YAML 1.1 reads "010" as octal), no '_' or '.'. */
static bool is_decimal(const char *s, size_t len, bool allow_sign) {
  size_t i = 0;
  if (allow_sign && len > 0 && (s[0] == '-' || s[0] == '+')) i = 1;
  if (i == len) return false;
  if (s[i] == '0' && len - i > 1) return false;
  for (; i < len; ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

bool cfg_parse_value(const cfg_key *k, const char *s, size_t len, bool plain, cfg_value *out, char *why,
                     size_t cap) {
  char type[512], shown[96];
  cfg_type_text(k, type, sizeof type);
  cfg_quote_for_msg(s, len, shown, sizeof shown);
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
        cfg_range_text(k, range, sizeof range);
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
        if (!cfg_ascii_casecmp(num, yes[i])) return out->b = true, true;
        if (!cfg_ascii_casecmp(num, no[i])) return out->b = false, true;
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
        cfg_names_list(k, list, sizeof list);
        snprintf(why, cap, "%s is not one of: %s", shown, list);
      }
      return false;
  }
  snprintf(why, cap, "expected %s, got %s", type, shown);
  return false;
}

bool cfg_check_value(const cfg_key *k, const cfg_value *v, char *why, size_t cap) {
  char range[96], shown[64];
  cfg_range_text(k, range, sizeof range);
  switch (k->kind) {
    case K_INT:
    case K_REAL: {
      double x = k->kind == K_INT ? (double)v->i : v->f;
      bool ok = (k->lo_open ? x > k->lo : x >= k->lo) && (k->hi_open ? x < k->hi : x <= k->hi);
      if (ok) return true;
      if (k->kind == K_INT)
        snprintf(shown, sizeof shown, "%lld", v->i);
      else
        cfg_format_real(v->f, shown, sizeof shown);
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

void cfg_store_value(drl_config *cfg, const cfg_key *k, const cfg_value *v) {
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

void cfg_store_list(drl_config *cfg, const cfg_key *k, const int *items, int n) {
  char *p = (char *)member(cfg, k);
  memcpy(p, &n, sizeof n);
  memset(p + k->items_offset, 0, (size_t)k->n_names * sizeof(int));
  memcpy(p + k->items_offset, items, (size_t)n * sizeof(int));
}

bool cfg_check_list(const cfg_key *k, const int *items, int n, char *why, size_t cap) {
  char list[256];
  cfg_names_list(k, list, sizeof list);
  if (n < 1) {
    snprintf(why, cap, "the list is empty; give at least one of: %s", list);
    return false;
  }
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j)
      if (items[i] == items[j]) {
        snprintf(why, cap, "'%s' appears more than once; each of %s may appear at most once",
                 cfg_enum_name(k, items[i]), list);
        return false;
      }
  return true;
}

bool cfg_read_member(const drl_config *cfg, const cfg_key *k, cfg_value *v, char *why, size_t cap) {
  const void *p = cfg_member(cfg, k);
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
      if (!cfg_valid_utf8(s, v->s_len)) {
        snprintf(why, cap, "the string is not valid UTF-8");
        return false;
      }
      return true;
    }
    case K_ENUM:
      memcpy(&v->e, p, sizeof v->e);
      if (!cfg_enum_name(k, v->e)) {
        char list[256];
        cfg_names_list(k, list, sizeof list);
        snprintf(why, cap, "holds %d, which is none of: %s", v->e, list);
        return false;
      }
      return true;
    case K_LIST: {
      int n = cfg_list_count(cfg, k), items[CFG_MAX_ENUM_VALUES];
      if (n < 0 || n > k->n_names) {
        snprintf(why, cap, "count %d is outside [1, %d]", n, k->n_names);
        return false;
      }
      for (int i = 0; i < n; ++i) {
        items[i] = cfg_list_item(cfg, k, i);
        if (!cfg_enum_name(k, items[i])) {
          snprintf(why, cap, "item %d holds %d, which is not a valid value", i, items[i]);
          return false;
        }
      }
      return cfg_check_list(k, items, n, why, cap);
    }
  }
  return true;
}

drl_backend drl_config_backend(const drl_config *cfg) {
  if (cfg->run.device == DRL_CFG_DEVICE_AUTO) return drl_cuda_device_count() > 0 ? DRL_BACKEND_CUDA : DRL_BACKEND_CPU;
  return cfg->run.device == DRL_CFG_DEVICE_CUDA ? DRL_BACKEND_CUDA : DRL_BACKEND_CPU;
}
