/* Private to engine/config_*.c: the key table generated from config.h and the helpers the configuration's files
 * share. Nothing outside the configuration includes this header.
 *
 * Files by concern:
 *   config_keys.c      the table, the embedded default, names, lookup and the messages about unknown names
 *   config_value.c     one value: read from text, range-checked, stored, read back; UTF-8 and message quoting
 *   config_yaml.c      loading YAML text or files (one pass over libyaml's events, storing as it checks)
 *   config_set.c       --set section.key=value
 *   config_validate.c  every rule on values, between keys, and between keys and the job
 *   config_print.c     printing as YAML, comparing, the key listing */
#ifndef DRL_CONFIG_INTERNAL_H
#define DRL_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"
#include "kernels/status.h"

/* ---- the key table ---- */

typedef enum cfg_kind { K_U64, K_INT, K_REAL, K_BOOL, K_STR, K_ENUM, K_LIST } cfg_kind;

/* One allowed value of an enumeration: its YAML spelling and its C value. */
typedef struct cfg_name {
  const char *str;
  int val;
} cfg_name;

typedef struct cfg_key {
  int section;    /* index into cfg_sections[] */
  const char *name;
  cfg_kind kind;
  size_t offset;  /* of the member in drl_config */
  size_t size;
  double lo, hi;  /* INT, REAL: the range; STR: lengths */
  bool lo_open, hi_open;
  const cfg_name *names;  /* ENUM, LIST: the allowed values */
  int n_names;
  size_t items_offset;    /* LIST: offset of items[] in the list struct */
  const char *def;        /* the default as YAML text */
  const char *help;
} cfg_key;

typedef struct cfg_section {
  const char *name, *help;
} cfg_section;

enum {
#define DRL_CFG_SECTION_INDEX_(sec, help) CFG_SEC_##sec,
  DRL_CONFIG_SECTIONS(DRL_CFG_SECTION_INDEX_) CFG_N_SECTIONS
#undef DRL_CFG_SECTION_INDEX_
};

enum {
#define DRL_CFG_KEY_ONE_(sec, key, type, def, help) +1
#define DRL_CFG_SECTION_COUNT_(sec, help) DRL_CONFIG_KEYS_##sec(DRL_CFG_KEY_ONE_)
  CFG_N_KEYS = 0 DRL_CONFIG_SECTIONS(DRL_CFG_SECTION_COUNT_)
#undef DRL_CFG_SECTION_COUNT_
#undef DRL_CFG_KEY_ONE_
};

#define CFG_MAX_ENUM_VALUES 64 /* lists are checked in fixed arrays of this size */

extern const cfg_section cfg_sections[CFG_N_SECTIONS];
extern const cfg_key cfg_keys[CFG_N_KEYS]; /* section by section, in the order of config.h */

/* The first line of the default and of every printed config. */
#define CFG_YAML_HEADER \
  "# dynrl configuration. Every key is optional in a file: a missing key keeps the value shown here.\n"

/* ---- lookup and messages (config_keys.c) ---- */

/* Index of the section called name, -1 if none. */
int cfg_find_section(const char *name);

/* The key called name in section sec, NULL if none. */
const cfg_key *cfg_find_key(int sec, const char *name);

/* "unknown section 'x' (did you mean 'y'?); sections: ..." into buf. */
void cfg_unknown_section_msg(const char *name, char *buf, size_t cap);

/* "unknown key 'sec.x' (did you mean 'y'?); keys of section 'sec': ..." into buf. */
void cfg_unknown_key_msg(int sec, const char *name, char *buf, size_t cap);

/* "run, model, ..." into buf. */
void cfg_sections_list(char *buf, size_t cap);

/* The allowed values of an ENUM or LIST key, "cpu, cuda", into buf. */
void cfg_names_list(const cfg_key *k, char *buf, size_t cap);

/* The YAML spelling of value v of k's enumeration, NULL if v is none of them. */
const char *cfg_enum_name(const cfg_key *k, int v);

/* The range of an INT, REAL or U64 key, "[1, 65536]", "(0, 1]"; "" for other kinds. */
void cfg_range_text(const cfg_key *k, char *buf, size_t cap);

/* What the key accepts, "an integer in [1, 65536]", "one of: cpu, cuda", for messages and help. */
void cfg_type_text(const cfg_key *k, char *buf, size_t cap);

/* ---- one value (config_value.c) ---- */

/* A value read from text; which member holds it follows the key's kind. */
typedef struct cfg_value {
  uint64_t u;
  long long i;
  double f;
  bool b;
  int e;
  const char *s; /* K_STR: points into the caller's text */
  size_t s_len;
} cfg_value;

/* Parses text as key k's type (lists: one item). `plain`: an unquoted YAML scalar, where ~ and null mean null. On
 * failure writes the reason (what follows "key.path: ") into why and returns false. */
bool cfg_parse_value(const cfg_key *k, const char *s, size_t len, bool plain, cfg_value *out, char *why, size_t cap);

/* The range of a parsed value (INT, REAL) and the length of a string; false with the reason in why. */
bool cfg_check_value(const cfg_key *k, const cfg_value *v, char *why, size_t cap);

/* A list's own rules: at least one item, no repeats; false with the reason in why. */
bool cfg_check_list(const cfg_key *k, const int *items, int n, char *why, size_t cap);

/* Stores a checked value of a non-LIST key into cfg. */
void cfg_store_value(drl_config *cfg, const cfg_key *k, const cfg_value *v);

/* Stores n checked items (n <= k->n_names) into LIST key k of cfg; the unused items are zeroed. */
void cfg_store_list(drl_config *cfg, const cfg_key *k, const int *items, int n);

/* Reads key k of cfg back into a value with the checks a value from text gets (finite numbers, bools 0/1,
 * NUL-terminated UTF-8 strings, known enum values, list rules); false with the reason in why. */
bool cfg_read_member(const drl_config *cfg, const cfg_key *k, cfg_value *v, char *why, size_t cap);

/* Where key k lives in cfg. */
const void *cfg_member(const drl_config *cfg, const cfg_key *k);

/* LIST key k of cfg: the item count as stored, and item i. */
int cfg_list_count(const drl_config *cfg, const cfg_key *k);
int cfg_list_item(const drl_config *cfg, const cfg_key *k, int i);

/* The shortest text strtod reads back to v, written so every YAML reader sees a float: 0.001, 1.0e-05, 10000.0. */
void cfg_format_real(double v, char *buf, size_t cap);

/* s[0..len) quoted for a message, cut short, control characters shown as '?'. cap >= 8. */
void cfg_quote_for_msg(const char *s, size_t len, char *buf, size_t cap);

/* Bytes of the UTF-8 sequence at p (1..4, at most avail) with its code point in *cp; 0 when p is not UTF-8. */
size_t cfg_utf8_decode(const unsigned char *p, size_t avail, unsigned *cp);

/* Nonzero when s[0..len) is UTF-8. */
bool cfg_valid_utf8(const char *s, size_t len);

/* strcasecmp for ASCII letters, whatever the locale. */
int cfg_ascii_casecmp(const char *a, const char *b);

/* ---- text buffers (config_print.c) ---- */

/* A growing text buffer; `failed` latches an allocation failure so callers check once at the end. */
typedef struct cfg_strbuf {
  char *p;
  size_t len, cap;
  bool failed;
} cfg_strbuf;

/* Appends n bytes of s. */
void cfg_sb_bytes(cfg_strbuf *b, const char *s, size_t n);

/* Appends printf-formatted text. */
void cfg_sb_printf(cfg_strbuf *b, const char *fmt, ...) DRL_PRINTF(2, 3);

#endif /* DRL_CONFIG_INTERNAL_H */
