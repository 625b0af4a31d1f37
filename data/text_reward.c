#include "text_reward.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Text is held as code points so that lengths, slices and "one character" mean what they mean in Python; every
 * pattern below is ASCII, so matching code points against ASCII literals is exact. */

#define CLIP_CHARS 300            /* gsm8k.py _SOLUTION_CLIP_CHARS and math_dapo.py's solution_str[-300:] */
#define PY_INT_MAX_STR_DIGITS 4300 /* CPython's default int() digit limit (sys.get_int_max_str_digits) */
#define NPOS ((size_t)-1)

typedef struct ustr {
  uint32_t *c;
  size_t n, cap;
} ustr;

/* One reward evaluation: allocation failures stick here, so string steps need no individual checks. */
typedef struct tr_ctx {
  int oom;
} tr_ctx;

static void us_free(ustr *s) {
  free(s->c);
  s->c = NULL;
  s->n = s->cap = 0;
}

static int us_reserve(tr_ctx *x, ustr *s, size_t need) {
  if (x->oom) return 0;
  if (need <= s->cap) return 1;
  size_t cap = s->cap ? s->cap : 16;
  while (cap < need) cap *= 2;
  uint32_t *c = (uint32_t *)realloc(s->c, cap * sizeof(uint32_t));
  if (!c) {
    x->oom = 1;
    return 0;
  }
  s->c = c;
  s->cap = cap;
  return 1;
}

static void us_push(tr_ctx *x, ustr *s, uint32_t cp) {
  if (us_reserve(x, s, s->n + 1)) s->c[s->n++] = cp;
}

static void us_app(tr_ctx *x, ustr *s, const uint32_t *p, size_t n) {
  if (n && us_reserve(x, s, s->n + n)) {
    memcpy(s->c + s->n, p, n * sizeof(uint32_t));
    s->n += n;
  }
}

static void us_lit(tr_ctx *x, ustr *s, const char *lit) {
  for (; *lit; ++lit) us_push(x, s, (unsigned char)*lit);
}

/* s = s[from, to) in place. */
static void us_slice(ustr *s, size_t from, size_t to) {
  if (from > 0 && to > from) memmove(s->c, s->c + from, (to - from) * sizeof(uint32_t));
  s->n = to > from ? to - from : 0;
}

/* Replaces dst's content with src's and frees src. */
static void us_take(ustr *dst, ustr *src) {
  free(dst->c);
  *dst = *src;
  src->c = NULL;
  src->n = src->cap = 0;
}

/* UTF-8 to code points; an invalid byte b becomes U+DC00 + b (Python's surrogateescape). */
static void us_decode(tr_ctx *x, ustr *out, const char *text, size_t len) {
  const unsigned char *s = (const unsigned char *)text;
  out->n = 0;
  if (!us_reserve(x, out, len + 1)) return;
  size_t i = 0;
  while (i < len) {
    unsigned b = s[i];
    uint32_t cp = 0;
    size_t k = 0;
    if (b < 0x80) cp = b, k = 1;
    else if (b >= 0xC2 && b <= 0xDF) cp = b & 0x1F, k = 2;
    else if (b >= 0xE0 && b <= 0xEF) cp = b & 0x0F, k = 3;
    else if (b >= 0xF0 && b <= 0xF4) cp = b & 0x07, k = 4;
    int ok = k > 0 && i + k <= len;
    for (size_t j = 1; ok && j < k; ++j) {
      ok = (s[i + j] & 0xC0) == 0x80;
      cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    /* overlong, surrogate and beyond-Unicode forms are invalid */
    if (ok && ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
      ok = 0;
    if (ok) {
      out->c[out->n++] = cp;
      i += k;
    } else {
      out->c[out->n++] = 0xDC00 + b;
      i += 1;
    }
  }
}

static int at(const ustr *s, size_t i, const char *lit) {
  size_t k = 0;
  for (; lit[k]; ++k)
    if (i + k >= s->n || s->c[i + k] != (unsigned char)lit[k]) return 0;
  return 1;
}

static size_t find(const ustr *s, size_t from, const char *lit) {
  for (size_t i = from; i < s->n; ++i)
    if (at(s, i, lit)) return i;
  return NPOS;
}

static size_t rfind(const ustr *s, const char *lit) {
  for (size_t i = s->n; i-- > 0;)
    if (at(s, i, lit)) return i;
  return NPOS;
}

/* Non-overlapping occurrences, left to right (str.count). */
static size_t count(const ustr *s, const char *lit) {
  size_t m = strlen(lit), c = 0;
  for (size_t i = find(s, 0, lit); i != NPOS; i = find(s, i + m, lit)) ++c;
  return c;
}

static size_t count_cp(const ustr *s, uint32_t cp) {
  size_t c = 0;
  for (size_t i = 0; i < s->n; ++i) c += s->c[i] == cp;
  return c;
}

/* str.replace(from, to). */
static void replace(tr_ctx *x, ustr *s, const char *from, const char *to) {
  size_t m = strlen(from);
  size_t i = find(s, 0, from);
  if (i == NPOS) return;
  ustr o = {0};
  size_t last = 0;
  for (; i != NPOS; i = find(s, last, from)) {
    us_app(x, &o, s->c + last, i - last);
    us_lit(x, &o, to);
    last = i + m;
  }
  us_app(x, &o, s->c + last, s->n - last);
  us_take(s, &o);
}

static int us_eq(const ustr *a, const ustr *b) {
  return a->n == b->n && (a->n == 0 || memcmp(a->c, b->c, a->n * sizeof(uint32_t)) == 0);
}

static int us_eq_lit(const ustr *s, const char *lit) { return strlen(lit) == s->n && at(s, 0, lit); }

/* str.isspace(): the characters of bidirectional class WS, B or S, or category Zs. Python's \s is the same set. */
static int py_isspace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* str.isdigit() (Numeric_Type Digit or Decimal), Unicode 14.0 as in CPython 3.11. */
static int py_isdigit(uint32_t c) {
  static const uint32_t r[][2] = {
      {0x30, 0x39}, {0xB2, 0xB3}, {0xB9, 0xB9}, {0x660, 0x669}, {0x6F0, 0x6F9}, {0x7C0, 0x7C9}, {0x966, 0x96F},
      {0x9E6, 0x9EF}, {0xA66, 0xA6F}, {0xAE6, 0xAEF}, {0xB66, 0xB6F}, {0xBE6, 0xBEF}, {0xC66, 0xC6F}, {0xCE6, 0xCEF},
      {0xD66, 0xD6F}, {0xDE6, 0xDEF}, {0xE50, 0xE59}, {0xED0, 0xED9}, {0xF20, 0xF29}, {0x1040, 0x1049},
      {0x1090, 0x1099}, {0x1369, 0x1371}, {0x17E0, 0x17E9}, {0x1810, 0x1819}, {0x1946, 0x194F}, {0x19D0, 0x19DA},
      {0x1A80, 0x1A89}, {0x1A90, 0x1A99}, {0x1B50, 0x1B59}, {0x1BB0, 0x1BB9}, {0x1C40, 0x1C49}, {0x1C50, 0x1C59},
      {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089}, {0x2460, 0x2468}, {0x2474, 0x247C}, {0x2488, 0x2490},
      {0x24EA, 0x24EA}, {0x24F5, 0x24FD}, {0x24FF, 0x24FF}, {0x2776, 0x277E}, {0x2780, 0x2788}, {0x278A, 0x2792},
      {0xA620, 0xA629}, {0xA8D0, 0xA8D9}, {0xA900, 0xA909}, {0xA9D0, 0xA9D9}, {0xA9F0, 0xA9F9}, {0xAA50, 0xAA59},
      {0xABF0, 0xABF9}, {0xFF10, 0xFF19}, {0x104A0, 0x104A9}, {0x10A40, 0x10A43}, {0x10D30, 0x10D39},
      {0x10E60, 0x10E68}, {0x11052, 0x1105A}, {0x11066, 0x1106F}, {0x110F0, 0x110F9}, {0x11136, 0x1113F},
      {0x111D0, 0x111D9}, {0x112F0, 0x112F9}, {0x11450, 0x11459}, {0x114D0, 0x114D9}, {0x11650, 0x11659},
      {0x116C0, 0x116C9}, {0x11730, 0x11739}, {0x118E0, 0x118E9}, {0x11950, 0x11959}, {0x11C50, 0x11C59},
      {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9}, {0x16B50, 0x16B59},
      {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149}, {0x1E2F0, 0x1E2F9}, {0x1E950, 0x1E959}, {0x1F100, 0x1F10A},
      {0x1FBF0, 0x1FBF9}};
  for (size_t i = 0; i < sizeof r / sizeof r[0] && c >= r[i][0]; ++i)
    if (c <= r[i][1]) return 1;
  return 0;
}

/* str.strip() in place. */
static void py_strip(ustr *s) {
  size_t a = 0, b = s->n;
  while (a < b && py_isspace(s->c[a])) ++a;
  while (b > a && py_isspace(s->c[b - 1])) --b;
  us_slice(s, a, b);
}

/* s[-300:] */
static void clip_tail(ustr *s) {
  if (s->n > CLIP_CHARS) us_slice(s, s->n - CLIP_CHARS, s->n);
}

/* ---------------------------------------------------------------- gsm8k.py */

static int num_char(uint32_t c) { return (c >= '0' && c <= '9') || c == '.' || c == ','; }

/* Length of the match of -?[0-9.,]+ at i (0: none). */
static size_t number_at(const ustr *s, size_t i) {
  size_t j = i;
  if (j < s->n && s->c[j] == '-' && j + 1 < s->n && num_char(s->c[j + 1])) ++j;
  if (j >= s->n || !num_char(s->c[j])) return 0;
  while (j < s->n && num_char(s->c[j])) ++j;
  return j - i;
}

/* extract_solution: *found = 0 for None; else out holds the answer. */
static void gsm8k_extract(tr_ctx *x, const ustr *s, int flexible, ustr *out, int *found) {
  size_t best = NPOS, best_n = 0, first = NPOS, first_n = 0;
  for (size_t i = 0; i < s->n;) {
    size_t p = i, m = 0;
    if (!flexible) {
      if (at(s, i, "#### ")) m = number_at(s, p = i + 5);
    } else {
      m = number_at(s, p);
    }
    if (!m) {
      ++i;
      continue;
    }
    if (first == NPOS) first = p, first_n = m;
    if (!flexible || !(m == 1 && s->c[p] == '.')) best = p, best_n = m; /* flexible skips a lone "." */
    i = p + m;
  }
  if (flexible && best == NPOS) best = first, best_n = first_n; /* the loop variable's last value: matches[0] */
  *found = best != NPOS;
  out->n = 0;
  for (size_t k = 0; k < best_n && *found; ++k)
    if (flexible || s->c[best + k] != ',') us_push(x, out, s->c[best + k]); /* strict drops ',' ('$' can't occur) */
}

static void gsm8k_score(tr_ctx *x, const ustr *resp, const ustr *answer, int flexible, double format_score,
                        double score, double *out) {
  ustr s = {0}, a = {0};
  us_app(x, &s, resp->c, resp->n);
  clip_tail(&s);
  int found = 0;
  gsm8k_extract(x, &s, flexible, &a, &found);
  *out = !found ? 0.0 : us_eq(&a, answer) ? score : format_score;
  us_free(&s);
  us_free(&a);
}

/* ---------------------------------------------------------------- math_reward.py */

/* last_boxed_only_string + remove_boxed: 1 with the boxed content in out, 0 where verl gets None or remove_boxed
 * raises (compute_score then scores 0). */
static int math_boxed(tr_ctx *x, const ustr *s, ustr *out) {
  out->n = 0;
  size_t sp = rfind(s, "\\boxed ");
  if (sp != NPOS) { /* "\\boxed " + string.split("\\boxed ")[-1].split("$")[0], then remove_boxed's s[7:] */
    for (size_t i = sp + 7; i < s->n && s->c[i] != '$'; ++i) us_push(x, out, s->c[i]);
    return 1;
  }
  size_t idx = rfind(s, "\\boxed");
  if (idx == NPOS) idx = rfind(s, "\\fbox");
  if (idx == NPOS) return 0;
  size_t right = NPOS;
  long open = 0;
  for (size_t i = idx; i < s->n; ++i) {
    if (s->c[i] == '{') ++open;
    if (s->c[i] == '}' && --open == 0) {
      right = i;
      break;
    }
  }
  if (right == NPOS) return 0;
  if (!at(s, idx, "\\boxed{")) return 0; /* remove_boxed's assert: \fbox{..} and \boxed<x>{..} */
  us_app(x, out, s->c + idx + 7, right - (idx + 7));
  return 1;
}

/* fix_sqrt; 0 where Python raises IndexError (an empty piece after "\\sqrt"). */
static int fix_sqrt(tr_ctx *x, ustr *s) {
  if (find(s, 0, "\\sqrt") == NPOS) return 1;
  ustr o = {0};
  size_t i = find(s, 0, "\\sqrt");
  us_app(x, &o, s->c, i);
  while (i != NPOS) {
    size_t p = i + 5, next = find(s, p, "\\sqrt"), end = next == NPOS ? s->n : next;
    if (p == end) {
      us_free(&o);
      return 0;
    }
    us_lit(x, &o, "\\sqrt");
    if (s->c[p] != '{') {
      us_push(x, &o, '{');
      us_push(x, &o, s->c[p]);
      us_push(x, &o, '}');
      us_app(x, &o, s->c + p + 1, end - p - 1);
    } else {
      us_app(x, &o, s->c + p, end - p);
    }
    i = next;
  }
  us_take(s, &o);
  return 1;
}

/* fix_fracs; 0 where Python raises IndexError (an empty piece after "\\frac"). A piece of one character that is not
 * '{' returns the input unchanged, as verl does. */
static int fix_fracs(tr_ctx *x, ustr *s) {
  size_t i = find(s, 0, "\\frac");
  if (i == NPOS) return 1;
  ustr o = {0};
  us_app(x, &o, s->c, i);
  while (i != NPOS) {
    size_t p = i + 5, next = find(s, p, "\\frac"), end = next == NPOS ? s->n : next;
    us_lit(x, &o, "\\frac");
    if (p == end) {
      us_free(&o);
      return 0;
    }
    if (s->c[p] == '{') {
      us_app(x, &o, s->c + p, end - p);
    } else if (end - p < 2) {
      us_free(&o);
      return 1;
    } else {
      uint32_t a = s->c[p], b = s->c[p + 1];
      us_push(x, &o, '{');
      us_push(x, &o, a);
      us_push(x, &o, '}');
      if (b != '{') {
        us_push(x, &o, '{');
        us_push(x, &o, b);
        us_push(x, &o, '}');
      } else {
        us_push(x, &o, b);
      }
      us_app(x, &o, s->c + p + 2, end - p - 2);
    }
    i = next;
  }
  us_take(s, &o);
  return 1;
}

/* s[a, b) is what str(int(s[a, b])) gives back: 0 or -?[1-9][0-9]*, within int()'s digit limit. */
static int canonical_int(const ustr *s, size_t a, size_t b) {
  int neg = a < b && s->c[a] == '-';
  size_t d = a + (size_t)neg, n = b - d;
  if (n == 0 || n > PY_INT_MAX_STR_DIGITS) return 0;
  for (size_t i = d; i < b; ++i)
    if (s->c[i] < '0' || s->c[i] > '9') return 0;
  if (s->c[d] == '0') return n == 1 && !neg; /* "0" alone: "-0" and leading zeros do not survive str(int(.)) */
  return 1;
}

/* fix_a_slash_b: "a/b" with canonical integers a, b becomes \frac{a}{b}. */
static void fix_a_slash_b(tr_ctx *x, ustr *s) {
  if (count_cp(s, '/') != 1) return;
  size_t k = 0;
  while (s->c[k] != '/') ++k;
  if (!canonical_int(s, 0, k) || !canonical_int(s, k + 1, s->n)) return;
  ustr o = {0};
  us_lit(x, &o, "\\frac{");
  us_app(x, &o, s->c, k);
  us_lit(x, &o, "}{");
  us_app(x, &o, s->c + k + 1, s->n - k - 1);
  us_push(x, &o, '}');
  us_take(s, &o);
}

/* strip_string; 0 where Python raises (is_equiv then compares the raw strings). */
static int strip_string(tr_ctx *x, ustr *s) {
  replace(x, s, "\n", "");
  replace(x, s, "\\!", "");
  replace(x, s, "\\\\", "\\");
  replace(x, s, "tfrac", "frac");
  replace(x, s, "dfrac", "frac");
  replace(x, s, "\\left", "");
  replace(x, s, "\\right", "");
  replace(x, s, "^{\\circ}", "");
  replace(x, s, "^\\circ", "");
  replace(x, s, "\\$", "");
  size_t units = count(s, "\\text{ "); /* remove_right_units: exactly one "\text{ " cuts there, more assert */
  if (units > 1) return 0;
  if (units == 1) s->n = find(s, 0, "\\text{ ");
  replace(x, s, "\\\\%", "");
  replace(x, s, "\\%", "");
  replace(x, s, " .", " 0.");
  replace(x, s, "{.", "{0.");
  if (s->n == 0) return 1;
  if (s->c[0] == '.') {
    ustr o = {0};
    us_push(x, &o, '0');
    us_app(x, &o, s->c, s->n);
    us_take(s, &o);
  }
  if (x->oom) return 1;
  if (count_cp(s, '=') == 1) { /* "k = 3": a left side of at most 2 characters is dropped */
    size_t e = 0;
    while (s->c[e] != '=') ++e;
    if (e <= 2) us_slice(s, e + 1, s->n);
  }
  if (!fix_sqrt(x, s)) return 0;
  replace(x, s, " ", "");
  if (!fix_fracs(x, s)) return 0;
  if (us_eq_lit(s, "0.5")) {
    s->n = 0;
    us_lit(x, s, "\\frac{1}{2}");
  }
  if (!x->oom) fix_a_slash_b(x, s);
  return 1;
}

static void math_score(tr_ctx *x, const ustr *resp, const ustr *answer, double *out) {
  ustr a = {0}, raw = {0}, b = {0};
  *out = 0.0;
  if (math_boxed(x, resp, &a)) {
    us_app(x, &raw, a.c, a.n);
    us_app(x, &b, answer->c, answer->n);
    int ok = strip_string(x, &a) && strip_string(x, &b);
    *out = (ok ? us_eq(&a, &b) : us_eq(&raw, answer)) ? 1.0 : 0.0; /* is_equiv's except: the raw strings */
  }
  us_free(&a);
  us_free(&raw);
  us_free(&b);
}

/* ---------------------------------------------------------------- math_dapo.py */

/* re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", s): '.' stops at '\n', so every line holding two '$' becomes
 * "$" + the text between its first two '$' + "$". */
static void dapo_dollars(tr_ctx *x, ustr *s) {
  ustr o = {0};
  for (size_t ls = 0; ls <= s->n;) {
    size_t le = ls;
    while (le < s->n && s->c[le] != '\n') ++le;
    size_t d1 = NPOS, d2 = NPOS;
    for (size_t i = ls; i < le && d2 == NPOS; ++i)
      if (s->c[i] == '$') {
        if (d1 == NPOS) d1 = i;
        else d2 = i;
      }
    if (d2 != NPOS) {
      us_push(x, &o, '$');
      us_app(x, &o, s->c + d1 + 1, d2 - d1 - 1);
      us_push(x, &o, '$');
    } else {
      us_app(x, &o, s->c + ls, le - ls);
    }
    if (le == s->n) break;
    us_push(x, &o, '\n');
    ls = le + 1;
  }
  us_take(s, &o);
}

/* re.sub(r"(<open>)(.*?)(\})" or "(.*)(\})", "\\2", s): open + text up to the first (lazy) or last (greedy) '}' of
 * the same line becomes the text. */
static void dapo_unwrap(tr_ctx *x, ustr *s, const char *open, int greedy) {
  size_t m = strlen(open);
  ustr o = {0};
  for (size_t i = 0; i < s->n;) {
    size_t close = NPOS;
    if (at(s, i, open))
      for (size_t j = i + m; j < s->n && s->c[j] != '\n'; ++j)
        if (s->c[j] == '}') {
          close = j;
          if (!greedy) break;
        }
    if (close == NPOS) {
      us_push(x, &o, s->c[i++]);
      continue;
    }
    us_app(x, &o, s->c + i + m, close - i - m);
    i = close + 1;
  }
  us_take(s, &o);
}

/* re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}") (two = 1) and re.sub(r"(sqrt)([^{])", "sqrt{\\2}") (two = 0). */
static void dapo_shorthand(tr_ctx *x, ustr *s, const char *name, int two) {
  ustr o = {0};
  for (size_t i = 0; i < s->n;) {
    size_t p = i + 4;
    int ok = at(s, i, name) && p < s->n && s->c[p] != '{' && (!two || (p + 1 < s->n && s->c[p + 1] != '\n'));
    if (!ok) {
      us_push(x, &o, s->c[i++]);
      continue;
    }
    us_lit(x, &o, name);
    us_push(x, &o, '{');
    us_push(x, &o, s->c[p]);
    us_push(x, &o, '}');
    if (two) {
      us_push(x, &o, '{');
      us_push(x, &o, s->c[p + 1]);
      us_push(x, &o, '}');
    }
    i = p + 1 + (size_t)two;
  }
  us_take(s, &o);
}

static const char *const dapo_substitutions[][2] = {
    {"an ", ""},    {"a ", ""},  {".$", "$"},   {"\\$", ""}, {"\\ ", ""}, {" ", ""}, {"mbox", "text"},
    {",\\text{and}", ","}, {"\\text{and}", ","}, {"\\text{m}", "\\text{}"}};

static const char *const dapo_removed[] = {
    "square", "ways",    "integers", "dollars", "mph",       "inches",    "hours",     "km",        "units",
    "\\ldots", "sue",    "points",   "feet",    "minutes",   "digits",    "cents",     "degrees",   "cm",
    "gm",      "pounds", "meters",   "meals",   "edges",     "students",  "childrentickets", "multiples",
    "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2", "\\text{}^3", "\\text{\n}", "\\text{}", "\\mathrm{th}",
    "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}", "\"", "\\dots"};

/* normalize_final_answer. */
static void dapo_normalize(tr_ctx *x, ustr *s) {
  size_t eq = NPOS;
  for (size_t i = 0; i < s->n; ++i)
    if (s->c[i] == '=') eq = i;
  if (eq != NPOS) us_slice(s, eq + 1, s->n);
  for (size_t i = 0; i < sizeof dapo_substitutions / sizeof dapo_substitutions[0]; ++i)
    replace(x, s, dapo_substitutions[i][0], dapo_substitutions[i][1]);
  for (size_t i = 0; i < sizeof dapo_removed / sizeof dapo_removed[0]; ++i) replace(x, s, dapo_removed[i], "");
  dapo_dollars(x, s);
  dapo_unwrap(x, s, "\\text{", 0);
  dapo_unwrap(x, s, "\\textbf{", 0);
  dapo_unwrap(x, s, "\\overline{", 0);
  dapo_unwrap(x, s, "\\boxed{", 1);
  dapo_shorthand(x, s, "frac", 1);
  dapo_shorthand(x, s, "sqrt", 0);
  replace(x, s, "$", "");
  size_t digits = 0, commas = count_cp(s, ',');
  for (size_t i = 0; i < s->n; ++i) digits += py_isdigit(s->c[i]);
  if (digits > 0 && digits + commas == s->n) replace(x, s, ",", ""); /* str.isdigit() after dropping commas */
  py_strip(s);
}

static int answer_letter(uint32_t c, char l) {
  return c == (uint32_t)l || c == (uint32_t)(l - 'a' + 'A') || (l == 's' && c == 0x17F);
}

/* The last match of (?i)Answer\s*:\s*([^\n]+) in s, scanning as re.findall does; 0 when there is none. */
static int dapo_extract(tr_ctx *x, const ustr *s, ustr *out) {
  static const char word[] = "answer";
  int found = 0;
  for (size_t i = 0; i < s->n;) {
    size_t j = i, k = 0;
    while (k < 6 && j < s->n && answer_letter(s->c[j], word[k])) ++j, ++k;
    if (k < 6) {
      ++i;
      continue;
    }
    while (j < s->n && py_isspace(s->c[j])) ++j;
    if (j >= s->n || s->c[j] != ':') {
      ++i;
      continue;
    }
    size_t c = j + 1, p = c;
    while (p < s->n && py_isspace(s->c[p])) ++p;
    /* [^\n]+ needs one non-newline: \s* gives back whitespace until one is found */
    size_t q = p;
    while (q > c && (q >= s->n || s->c[q] == '\n')) --q;
    if (q >= s->n || s->c[q] == '\n') {
      ++i;
      continue;
    }
    size_t e = q;
    while (e < s->n && s->c[e] != '\n') ++e;
    out->n = 0;
    us_app(x, out, s->c + q, e - q);
    found = 1;
    i = e;
  }
  return found;
}

static void dapo_score(tr_ctx *x, const ustr *resp, const ustr *answer, double *out) {
  ustr s = {0}, pred = {0}, gt = {0};
  us_app(x, &s, resp->c, resp->n);
  clip_tail(&s);
  if (!dapo_extract(x, &s, &pred)) us_lit(x, &pred, "[INVALID]");
  us_app(x, &gt, answer->c, answer->n);
  dapo_normalize(x, &pred);
  dapo_normalize(x, &gt);
  *out = us_eq(&pred, &gt) ? 1.0 : -1.0;
  us_free(&s);
  us_free(&pred);
  us_free(&gt);
}

/* ---------------------------------------------------------------- TRL think format, exact */

static size_t mem_find(const char *s, size_t n, size_t from, const char *lit) {
  size_t m = strlen(lit);
  for (size_t i = from; i + m <= n; ++i)
    if (memcmp(s + i, lit, m) == 0) return i;
  return NPOS;
}

/* Byte matching is exact here: the tags are ASCII and UTF-8 never puts ASCII bytes inside a character. */
static double think_format(const char *s, size_t n) {
  if (n < 7 || memcmp(s, "<think>", 7) != 0) return 0.0;
  return mem_find(s, n, 7, "<think>") == NPOS && mem_find(s, n, 7, "</think>") != NPOS ? 1.0 : 0.0;
}

/* ---------------------------------------------------------------- public */

static const char *const reward_names[] = {"gsm8k",        "gsm8k_flexible", "math", "answer_tag",
                                           "think_format", "exact",          NULL};

const char *const *drl_text_reward_names(void) { return reward_names; }

static void known_list(char *buf, size_t cap) {
  buf[0] = '\0';
  for (int i = 0; reward_names[i]; ++i) {
    size_t l = strlen(buf);
    snprintf(buf + l, cap - l, "%s%s", i ? ", " : "", reward_names[i]);
  }
}

drl_status drl_text_reward_lookup(const char *name, size_t len, drl_text_reward_kind *kind) {
  if (!name || !kind) return DRL_FAIL(DRL_ERR_INVALID_ARG, "text reward lookup: name and kind must not be NULL");
  for (int i = 0; reward_names[i]; ++i)
    if (strlen(reward_names[i]) == len && memcmp(reward_names[i], name, len) == 0) {
      *kind = (drl_text_reward_kind)i;
      return DRL_OK;
    }
  char known[160];
  known_list(known, sizeof known);
  return DRL_FAIL(DRL_ERR_INVALID_ARG, "unknown reward \"%.*s\" (known: %s)", (int)(len > 64 ? 64 : len), name, known);
}

static drl_status check_text(const char *response, const char *answer, const void *out) {
  if (!response || !answer || !out)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "text reward: response, answer and the output must not be NULL");
  return DRL_OK;
}

static drl_status finish(tr_ctx *x, ustr *r, ustr *a) {
  us_free(r);
  us_free(a);
  return x->oom ? DRL_FAIL(DRL_ERR_OOM, "text reward: out of memory") : DRL_OK;
}

drl_status drl_reward_gsm8k(const char *response, size_t response_len, const char *answer, size_t answer_len,
                            int flexible, double format_score, double score, double *out) {
  DRL_TRY(check_text(response, answer, out));
  tr_ctx x = {0};
  ustr r = {0}, a = {0};
  us_decode(&x, &r, response, response_len);
  us_decode(&x, &a, answer, answer_len);
  *out = 0.0;
  if (!x.oom) gsm8k_score(&x, &r, &a, flexible, format_score, score, out);
  return finish(&x, &r, &a);
}

drl_status drl_text_reward_score(drl_text_reward_kind kind, const char *response, size_t response_len,
                                 const char *answer, size_t answer_len, double *score) {
  DRL_TRY(check_text(response, answer, score));
  if ((int)kind < 0 || kind >= DRL_REWARD_KINDS)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "text reward: kind %d is not one of 0..%d", (int)kind, DRL_REWARD_KINDS - 1);
  if (kind == DRL_REWARD_GSM8K || kind == DRL_REWARD_GSM8K_FLEXIBLE)
    return drl_reward_gsm8k(response, response_len, answer, answer_len, kind == DRL_REWARD_GSM8K_FLEXIBLE, 0.0,
                            1.0, score);
  if (kind == DRL_REWARD_THINK_FORMAT) {
    *score = think_format(response, response_len);
    return DRL_OK;
  }
  tr_ctx x = {0};
  ustr r = {0}, a = {0};
  us_decode(&x, &r, response, response_len);
  us_decode(&x, &a, answer, answer_len);
  *score = 0.0;
  if (!x.oom) {
    if (kind == DRL_REWARD_MATH) {
      math_score(&x, &r, &a, score);
    } else if (kind == DRL_REWARD_ANSWER_TAG) {
      dapo_score(&x, &r, &a, score);
    } else { /* DRL_REWARD_EXACT */
      py_strip(&r);
      py_strip(&a);
      *score = us_eq(&r, &a) ? 1.0 : 0.0;
    }
  }
  return finish(&x, &r, &a);
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

drl_status drl_text_reward_parse(const char *spec, drl_text_reward_spec *out) {
  if (!spec || !out) return DRL_FAIL(DRL_ERR_INVALID_ARG, "reward spec: spec and out must not be NULL");
  drl_text_reward_spec r;
  memset(&r, 0, sizeof r);
  const char *p = spec;
  for (int term = 1;; ++term) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *ne = colon ? colon : end;
    const char *nb = p;
    while (nb < ne && is_blank(*nb)) ++nb;
    while (ne > nb && is_blank(ne[-1])) --ne;
    if (ne == nb)
      return DRL_FAIL(DRL_ERR_INVALID_ARG,
                      "reward spec \"%s\": term %d has no reward name (expected name[:weight],... e.g. "
                      "\"gsm8k:1.0,think_format:0.1\")", spec, term);
    drl_text_reward_kind kind;
    if (drl_text_reward_lookup(nb, (size_t)(ne - nb), &kind) != DRL_OK)
      return drl_fail_context(DRL_ERR_INVALID_ARG, "reward spec \"%s\"", spec);
    double w = 1.0;
    if (colon) {
      char buf[64];
      const char *wb = colon + 1, *we = end;
      while (wb < we && is_blank(*wb)) ++wb;
      while (we > wb && is_blank(we[-1])) --we;
      size_t wl = (size_t)(we - wb);
      char *stop = NULL;
      if (wl > 0 && wl < sizeof buf) {
        memcpy(buf, wb, wl);
        buf[wl] = '\0';
        w = strtod(buf, &stop);
      }
      if (wl == 0 || wl >= sizeof buf || *stop != '\0' || !isfinite(w))
        return DRL_FAIL(DRL_ERR_INVALID_ARG, "reward spec \"%s\": the weight of %s is \"%.*s\", expected a finite number",
                        spec, reward_names[kind], (int)(wl > 32 ? 32 : wl), wb);
    }
    for (int i = 0; i < r.n; ++i)
      if (r.kind[i] == kind)
        return DRL_FAIL(DRL_ERR_INVALID_ARG, "reward spec \"%s\": %s appears twice (give it one weight)", spec,
                        reward_names[kind]);
    r.kind[r.n] = kind;
    r.weight[r.n] = w;
    ++r.n;
    if (*end == '\0') break;
    p = end + 1;
  }
  *out = r;
  return DRL_OK;
}

drl_status drl_text_reward_eval(const drl_text_reward_spec *spec, const char *response, size_t response_len,
                                const char *answer, size_t answer_len, double *reward) {
  DRL_TRY(check_text(response, answer, reward));
  if (!spec || spec->n < 1 || spec->n > DRL_REWARD_KINDS)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "text reward: a spec with 1..%d terms is required (drl_text_reward_parse)",
                    DRL_REWARD_KINDS);
  double sum = 0.0;
  for (int i = 0; i < spec->n; ++i) {
    double s;
    DRL_TRY(drl_text_reward_score(spec->kind[i], response, response_len, answer, answer_len, &s));
    sum += spec->weight[i] * s;
  }
  *reward = sum;
  return DRL_OK;
}
