/* Configuration: the key table generated from config.h, the embedded default, enumeration names, lookup by name,
 * and the texts that describe keys (types, ranges, what an unknown name may have meant). */
#include <stdio.h>
#include <string.h>

#include "engine/config_internal.h"

/* ---- the table ---- */

#define CFG_NAME_(id, str) {str, id},
#define DEFINE_NAMES_(e) static const cfg_name names_##e[] = {DRL_CFG_ENUM_##e(CFG_NAME_)};
DRL_CFG_ENUMS(DEFINE_NAMES_)

/* Generic code reads and writes enum values and list items as int. */
#define ASSERT_ENUM_IS_INT_(e) \
  _Static_assert(sizeof(drl_cfg_##e) == sizeof(int), "drl_cfg_" #e " must be int-sized");
DRL_CFG_ENUMS(ASSERT_ENUM_IS_INT_)
#define ASSERT_ENUM_SMALL_(e) \
  _Static_assert(DRL_CFG_COUNT_##e <= CFG_MAX_ENUM_VALUES, "drl_cfg_" #e " is too large");
DRL_CFG_ENUMS(ASSERT_ENUM_SMALL_)

#define SECTION_INFO_(sec, help) {#sec, help},
const cfg_section cfg_sections[CFG_N_SECTIONS] = {DRL_CONFIG_SECTIONS(SECTION_INFO_)};

#define KINFO_U64 .kind = K_U64
#define KINFO_INT(a, b) .kind = K_INT, .lo = (a), .hi = (b)
#define KINFO_REAL(a, b) .kind = K_REAL, .lo = (a), .hi = (b)
#define KINFO_REAL_GT(a, b) .kind = K_REAL, .lo = (a), .hi = (b), .lo_open = true
#define KINFO_REAL_LT(a, b) .kind = K_REAL, .lo = (a), .hi = (b), .hi_open = true
#define KINFO_BOOL .kind = K_BOOL
#define KINFO_STR(min_len) .kind = K_STR, .lo = (min_len), .hi = DRL_CONFIG_STR_CAP - 1
#define KINFO_ENUM(e) .kind = K_ENUM, .names = names_##e, .n_names = DRL_CFG_COUNT_##e
#define KINFO_LIST(e) \
  .kind = K_LIST, .names = names_##e, .n_names = DRL_CFG_COUNT_##e, .items_offset = offsetof(drl_cfg_##e##_list, items)
#define KEY_INFO_(sec, key, type, default_yaml, help_text)                                                     \
  {.section = CFG_SEC_##sec, .name = #key, .offset = offsetof(drl_config, sec.key),                            \
   .size = sizeof(((drl_config *)0)->sec.key), KINFO_##type, .def = default_yaml, .help = help_text},
#define SECTION_KEYS_(sec, help) DRL_CONFIG_KEYS_##sec(KEY_INFO_)
const cfg_key cfg_keys[CFG_N_KEYS] = {DRL_CONFIG_SECTIONS(SECTION_KEYS_)};

/* ---- the embedded default: assembled from the tables, in the layout drl_config_to_yaml prints ---- */

#define DEFAULT_KEY_(sec, key, type, default_yaml, help) "  # " help "\n  " #key ": " default_yaml "\n"
#define DEFAULT_SECTION_(sec, help) "\n# " help "\n" #sec ":\n" DRL_CONFIG_KEYS_##sec(DEFAULT_KEY_)
static const char default_yaml[] = CFG_YAML_HEADER DRL_CONFIG_SECTIONS(DEFAULT_SECTION_);

const char *drl_config_default_yaml(void) { return default_yaml; }

/* ---- enumeration names ---- */

#define DRL_CFG_NAME_CASE_(id, str) \
  case id:                          \
    return str;
#define DRL_CFG_DEFINE_NAME_(e)                             \
  const char *drl_cfg_##e##_name(drl_cfg_##e value) {      \
    switch (value) { DRL_CFG_ENUM_##e(DRL_CFG_NAME_CASE_) } \
    return "?";                                             \
  }
DRL_CFG_ENUMS(DRL_CFG_DEFINE_NAME_)

const char *cfg_enum_name(const cfg_key *k, int v) {
  for (int i = 0; i < k->n_names; ++i)
    if (k->names[i].val == v) return k->names[i].str;
  return NULL;
}

void cfg_names_list(const cfg_key *k, char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (int i = 0; i < k->n_names && n < cap; ++i) {
    int w = snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", k->names[i].str);
    if (w < 0) break;
    n += (size_t)w;
  }
}

/* ---- lookup ---- */

int cfg_find_section(const char *name) {
  for (int s = 0; s < CFG_N_SECTIONS; ++s)
    if (strcmp(cfg_sections[s].name, name) == 0) return s;
  return -1;
}

const cfg_key *cfg_find_key(int sec, const char *name) {
  for (size_t i = 0; i < CFG_N_KEYS; ++i)
    if (cfg_keys[i].section == sec && strcmp(cfg_keys[i].name, name) == 0) return &cfg_keys[i];
  return NULL;
}

/* The keys of a section, for "unknown key" messages. */
static void section_keys_list(int sec, char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < CFG_N_KEYS && n < cap; ++i) {
    if (cfg_keys[i].section != sec) continue;
    int w = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", cfg_keys[i].name);
    if (w < 0) break;
    n += (size_t)w;
  }
}

void cfg_sections_list(char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (int s = 0; s < CFG_N_SECTIONS && n < cap; ++s) {
    int w = snprintf(buf + n, cap - n, "%s%s", s ? ", " : "", cfg_sections[s].name);
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

/* Messages about unknown names: what is allowed, and the nearest allowed name when it is a likely typo. */
void cfg_unknown_section_msg(const char *name, char *buf, size_t cap) {
  char list[512];
  cfg_sections_list(list, sizeof list);
  const char *best = NULL;
  size_t best_d = 3;
  for (int s = 0; s < CFG_N_SECTIONS; ++s) {
    size_t d = edit_distance(name, cfg_sections[s].name);
    if (d < best_d) best_d = d, best = cfg_sections[s].name;
  }
  snprintf(buf, cap, "unknown section '%.64s'%s%s%s; sections: %s", name, best ? " (did you mean '" : "",
           best ? best : "", best ? "'?)" : "", list);
}

void cfg_unknown_key_msg(int sec, const char *name, char *buf, size_t cap) {
  char list[1024];
  section_keys_list(sec, list, sizeof list);
  const char *best = NULL;
  size_t best_d = 3;
  for (size_t i = 0; i < CFG_N_KEYS; ++i) {
    if (cfg_keys[i].section != sec) continue;
    size_t d = edit_distance(name, cfg_keys[i].name);
    if (d < best_d) best_d = d, best = cfg_keys[i].name;
  }
  snprintf(buf, cap, "unknown key '%s.%.64s'%s%s%s; keys of section '%s': %s", cfg_sections[sec].name, name,
           best ? " (did you mean '" : "", best ? best : "", best ? "'?)" : "", cfg_sections[sec].name, list);
}

/* ---- what a key accepts ---- */

void cfg_range_text(const cfg_key *k, char *buf, size_t cap) {
  switch (k->kind) {
    case K_U64: snprintf(buf, cap, "[0, %llu]", (unsigned long long)UINT64_MAX); return;
    case K_INT:
    case K_REAL:
      snprintf(buf, cap, "%c%.17g, %.17g%c", k->lo_open ? '(' : '[', k->lo, k->hi, k->hi_open ? ')' : ']');
      return;
    default: buf[0] = '\0'; return;
  }
}

void cfg_type_text(const cfg_key *k, char *buf, size_t cap) {
  char list[256], range[96];
  cfg_range_text(k, range, sizeof range);
  switch (k->kind) {
    case K_U64: snprintf(buf, cap, "an unsigned 64-bit integer"); return;
    case K_INT: snprintf(buf, cap, "an integer in %s", range); return;
    case K_REAL: snprintf(buf, cap, "a number in %s", range); return;
    case K_BOOL: snprintf(buf, cap, "true or false"); return;
    case K_STR:
      snprintf(buf, cap, "a string%s", k->lo > 0 ? " (not empty)" : "");
      return;
    case K_ENUM:
      cfg_names_list(k, list, sizeof list);
      snprintf(buf, cap, "one of: %s", list);
      return;
    case K_LIST:
      cfg_names_list(k, list, sizeof list);
      snprintf(buf, cap, "a list of distinct values from: %s", list);
      return;
  }
  buf[0] = '\0';
}
