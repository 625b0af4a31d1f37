/* Configuration: --set section.key=value, with the same value reader as YAML files. */
#include <stdio.h>
#include <string.h>

#include "engine/config_internal.h"

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void trim(const char **s, size_t *len) {
  while (*len && is_space(**s)) ++*s, --*len;
  while (*len && is_space((*s)[*len - 1])) --*len;
}

drl_status drl_config_set(drl_config *cfg, const char *assignment) {
  if (!cfg || !assignment) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_config_set: cfg or assignment is NULL");
  char shown[160], why[1536];
  cfg_quote_for_msg(assignment, strlen(assignment), shown, sizeof shown);
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
  int sec = cfg_find_section(sec_buf);
  if (sec < 0) {
    cfg_unknown_section_msg(sec_buf, why, sizeof why);
    return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s", shown, why);
  }
  const cfg_key *k = cfg_find_key(sec, key_buf);
  if (!k) {
    cfg_unknown_key_msg(sec, key_buf, why, sizeof why);
    return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s", shown, why);
  }

  const char *val = eq + 1;
  size_t len = strlen(val);
  cfg_value v;
  if (k->kind == K_STR) { /* verbatim: the shell already did the quoting */
    if (!cfg_valid_utf8(val, len))
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
    int items[CFG_MAX_ENUM_VALUES + 1], n = 0;
    for (size_t pos = 0; len > 0 && pos <= len;) {
      const char *comma = memchr(val + pos, ',', len - pos);
      size_t end = comma ? (size_t)(comma - val) : len;
      const char *item = val + pos;
      size_t item_len = end - pos;
      trim(&item, &item_len);
      if (!cfg_parse_value(k, item, item_len, false, &v, why, sizeof why))
        return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s.%s: %s", shown, sec_buf, key_buf, why);
      items[n++] = v.e;
      if (!cfg_check_list(k, items, n, why, sizeof why)) /* a repeat: stop before items[] can fill up */
        return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s.%s: %s", shown, sec_buf, key_buf, why);
      pos = end + 1;
    }
    if (!cfg_check_list(k, items, n, why, sizeof why))
      return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s.%s: %s", shown, sec_buf, key_buf, why);
    cfg_store_list(cfg, k, items, n);
    return DRL_OK;
  }
  if (!cfg_parse_value(k, val, len, false, &v, why, sizeof why) || !cfg_check_value(k, &v, why, sizeof why))
    return DRL_FAIL(DRL_ERR_CONFIG, "override %s: %s.%s: %s", shown, sec_buf, key_buf, why);
  cfg_store_value(cfg, k, &v);
  return DRL_OK;
}
