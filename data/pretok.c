#include "pretok.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

/* Oniguruma's \s (Unicode White_Space without U+180E, which PCRE2 10.42 still counts), as class contents. */
#define WS_CLASS "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

static int append(char **buf, size_t *n, size_t *cap, const char *s, size_t len) {
  if (*n + len + 1 > *cap) {
    size_t c = *cap ? *cap : 256;
    while (c < *n + len + 1) c *= 2;
    char *b = (char *)realloc(*buf, c);
    if (!b) return 0;
    *buf = b, *cap = c;
  }
  memcpy(*buf + *n, s, len);
  *n += len;
  (*buf)[*n] = '\0';
  return 1;
}

/* The pattern with \s and \S replaced (inside a class \s becomes the class's contents; \S there is refused). */
static drl_status patch_whitespace(const char *p, size_t n, char **out, size_t *out_len) {
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int in_class = 0, ok = 1;
  for (size_t i = 0; i < n && ok;) {
    char c = p[i];
    if (c == '\\' && i + 1 < n) {
      char d = p[i + 1];
      if (d == 's') {
        ok = in_class ? append(&buf, &len, &cap, WS_CLASS, strlen(WS_CLASS))
                      : append(&buf, &len, &cap, "[", 1) && append(&buf, &len, &cap, WS_CLASS, strlen(WS_CLASS)) &&
                            append(&buf, &len, &cap, "]", 1);
      } else if (d == 'S') {
        if (in_class) {
          free(buf);
          return DRL_FAIL(DRL_ERR_FORMAT, "\\S inside a character class (offset %zu) is not supported", i);
        }
        ok = append(&buf, &len, &cap, "[^", 2) && append(&buf, &len, &cap, WS_CLASS, strlen(WS_CLASS)) &&
             append(&buf, &len, &cap, "]", 1);
      } else if (d == 'Q') { /* a quoted literal runs to \E unchanged */
        const char *e = NULL;
        for (size_t j = i + 2; j + 1 < n; ++j)
          if (p[j] == '\\' && p[j + 1] == 'E') {
            e = p + j + 2;
            break;
          }
        size_t end = e ? (size_t)(e - p) : n;
        ok = append(&buf, &len, &cap, p + i, end - i);
        i = end;
        continue;
      } else {
        ok = append(&buf, &len, &cap, p + i, 2);
      }
      i += 2;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = 1;
      size_t j = i + 1;
      if (j < n && p[j] == '^') ++j;
      if (j < n && p[j] == ']') ++j; /* a leading ] is literal */
      ok = append(&buf, &len, &cap, p + i, j - i);
      i = j;
      continue;
    }
    if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* [:alpha:] */
      size_t j = i + 2;
      while (j + 1 < n && !(p[j] == ':' && p[j + 1] == ']')) ++j;
      j = j + 1 < n ? j + 2 : n;
      ok = append(&buf, &len, &cap, p + i, j - i);
      i = j;
      continue;
    }
    if (in_class && c == ']') in_class = 0;
    ok = append(&buf, &len, &cap, &c, 1);
    ++i;
  }
  if (!ok || !buf) {
    if (ok && append(&buf, &len, &cap, "", 0)) { /* the empty pattern */
      *out = buf, *out_len = 0;
      return DRL_OK;
    }
    free(buf);
    return DRL_FAIL(DRL_ERR_OOM, "out of memory patching a pattern of %zu bytes", n);
  }
  *out = buf, *out_len = len;
  return DRL_OK;
}

drl_status drl_pretok_compile(const char *pattern, size_t len, drl_pretok_regex *out) {
  memset(out, 0, sizeof *out);
  char *patched;
  size_t plen;
  DRL_TRY(patch_whitespace(pattern, len, &patched, &plen));
  int err;
  PCRE2_SIZE at;
  pcre2_code *code = pcre2_compile((PCRE2_SPTR)patched, plen, PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
  free(patched);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return DRL_FAIL(DRL_ERR_FORMAT, "the pattern does not compile (PCRE2, near offset %zu): %s", (size_t)at,
                    (const char *)msg);
  }
  out->code = code;
  out->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  out->match_data = pcre2_match_data_create_from_pattern(code, NULL);
  out->context = pcre2_match_context_create(NULL);
  /* Long runs of one class (white space, letters) backtrack deeper than the 32 KiB default JIT stack allows. */
  if (out->jit) out->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
  if (!out->match_data || !out->context || (out->jit && !out->jit_stack)) {
    drl_pretok_free(out);
    return DRL_FAIL(DRL_ERR_OOM, "out of memory for a pattern's match data");
  }
  if (out->jit) pcre2_jit_stack_assign((pcre2_match_context *)out->context, NULL, out->jit_stack);
  return DRL_OK;
}

static drl_status push(drl_spans *s, int64_t off, int64_t len) {
  if (len <= 0) return DRL_OK;
  if (s->n == s->cap) {
    int64_t cap = s->cap ? 2 * s->cap : 64;
    drl_span *v = (drl_span *)realloc(s->v, (size_t)cap * sizeof *v);
    if (!v) return DRL_FAIL(DRL_ERR_OOM, "out of memory for %lld pieces", (long long)cap);
    s->v = v, s->cap = cap;
  }
  s->v[s->n].off = off, s->v[s->n].len = len;
  s->n++;
  return DRL_OK;
}

/* Bytes of the UTF-8 character led by b. */
static inline int64_t char_len(unsigned char b) { return b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

drl_status drl_pretok_split(drl_pretok_regex *re, const char *text, drl_span span, drl_spans *out) {
  pcre2_code *code = (pcre2_code *)re->code;
  pcre2_match_data *md = (pcre2_match_data *)re->match_data;
  pcre2_match_context *ctx = (pcre2_match_context *)re->context;
  PCRE2_SPTR subject = (PCRE2_SPTR)(text + span.off);
  PCRE2_SIZE n = (PCRE2_SIZE)span.len, start = 0, done = 0; /* done: the end of the last piece emitted */
  while (start < n) {
    int rc = re->jit ? pcre2_jit_match(code, subject, n, start, 0, md, ctx)
                     : pcre2_match(code, subject, n, start, PCRE2_NO_UTF_CHECK, md, ctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "pre-tokenizing %lld bytes: PCRE2 failed at offset %zu: %s",
                      (long long)n, (size_t)start, (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    PCRE2_SIZE s = ov[0], e = ov[1];
    if (e > s) {
      DRL_TRY(push(out, span.off + (int64_t)done, (int64_t)(s - done)));
      DRL_TRY(push(out, span.off + (int64_t)s, (int64_t)(e - s)));
      done = start = e;
    } else { /* an empty match: step over one character (it stays in the gap) */
      if (s >= n) break;
      start = s + (PCRE2_SIZE)char_len(subject[s]);
    }
  }
  return push(out, span.off + (int64_t)done, (int64_t)(n - done));
}

void drl_pretok_free(drl_pretok_regex *re) {
  if (!re) return;
  if (re->jit_stack) pcre2_jit_stack_free((pcre2_jit_stack *)re->jit_stack);
  if (re->context) pcre2_match_context_free((pcre2_match_context *)re->context);
  if (re->match_data) pcre2_match_data_free((pcre2_match_data *)re->match_data);
  if (re->code) pcre2_code_free((pcre2_code *)re->code);
  memset(re, 0, sizeof *re);
}

void drl_spans_free(drl_spans *s) {
  if (!s) return;
  free(s->v);
  memset(s, 0, sizeof *s);
}
