/* Encoding with a byte-level BPE (bpe.h), in Hugging Face's order: added tokens not normalized are split out of the
 * raw text; each remaining span is NFC-normalised (when the tokenizer says so) and the normalized added tokens are
 * split out of it; what remains is pre-tokenized by the regexes into pieces, and each piece is merged. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "bpe_internal.h"
#include "byte_level.h"
#include "utf8.h"

/* The per-piece cache: pieces longer than this are not cached; it is emptied when it holds this many ids. */
#define CACHE_MAX_PIECE 256
#define CACHE_MAX_IDS (1 << 20)

/* Code points that NFC never changes and that never combine with a neighbour (NFC_Quick_Check = Yes and canonical
 * combining class 0): Latin below the combining marks, general punctuation but for the two singletons U+2000/2001,
 * kana without the combining sound marks, CJK ideographs (not the compatibility ones), Hangul syllables, emoji. A text
 * made only of them is NFC, so the common case skips utf8proc. */
static int nfc_inert(uint32_t cp) {
  static const uint32_t kRanges[][2] = {{0x0000, 0x02FF},   {0x2002, 0x206F},   {0x3041, 0x3096},
                                        {0x309B, 0x30FF},   {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},
                                        {0xAC00, 0xD7A3},   {0xFE0F, 0xFE0F},   {0x1F1E6, 0x1F1FF},
                                        {0x1F300, 0x1FAFF}};
  for (size_t i = 0; i < sizeof kRanges / sizeof kRanges[0]; ++i)
    if (cp >= kRanges[i][0] && cp <= kRanges[i][1]) return 1;
  return 0;
}

drl_status drl_bpe_nfc(const char *s, int64_t n, char **out, int64_t *out_len) {
  *out = NULL, *out_len = n;
  int64_t i = 0;
  while (i < n) {
    if ((unsigned char)s[i] < 0x80) {
      ++i;
      continue;
    }
    uint32_t cp;
    int k = drl_utf8_char((const uint8_t *)s + i, (size_t)(n - i), &cp);
    if (k == 0 || !nfc_inert(cp)) break;
    i += k;
  }
  if (i == n) return DRL_OK;
  utf8proc_uint8_t *dst = NULL;
  utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                    (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (m < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "NFC of %lld bytes failed: %s", (long long)n, utf8proc_errmsg(m));
  *out = (char *)dst, *out_len = (int64_t)m;
  return DRL_OK;
}

/* The leftmost match of an added token of index ix in s[from..n) (the longest at that position): 1 with *at and
 * *which, or 0. */
static int find_added(const drl_bpe *b, const drl_bpe_added_index *ix, const char *s, int64_t n, int64_t from,
                      int64_t *at, int32_t *which) {
  if (!ix->order) return 0;
  for (int64_t i = from; i < n; ++i) {
    unsigned char c = (unsigned char)s[i];
    for (int32_t k = ix->start[c]; k < ix->start[c + 1]; ++k) {
      const drl_bpe_added *a = &b->added[ix->order[k]];
      if (a->len <= n - i && memcmp(s + i, a->match, (size_t)a->len) == 0) {
        *at = i, *which = ix->order[k];
        return 1;
      }
    }
  }
  return 0;
}

static drl_status cache_put(drl_bpe *b, const char *p, int64_t m, const int32_t *ids, int64_t k) {
  if (b->cache_ids.n + k + 1 > CACHE_MAX_IDS) {
    drl_str_map_clear(&b->cache);
    b->cache_ids.n = 0;
  }
  int32_t off = (int32_t)b->cache_ids.n, old;
  DRL_TRY(drl_ids_push(&b->cache_ids, (int32_t)k));
  for (int64_t i = 0; i < k; ++i) DRL_TRY(drl_ids_push(&b->cache_ids, ids[i]));
  return drl_str_map_put(&b->cache, p, (size_t)m, off, &old);
}

/* One piece p[0..m) (raw bytes) to ids. */
static drl_status encode_piece(drl_bpe *b, const char *p, int64_t m, drl_ids *out) {
  int cacheable = m <= CACHE_MAX_PIECE;
  if (cacheable) {
    int32_t off = drl_str_map_get(&b->cache, p, (size_t)m);
    if (off >= 0) {
      const int32_t *c = b->cache_ids.v + off;
      for (int32_t i = 1; i <= c[0]; ++i) DRL_TRY(drl_ids_push(out, c[i]));
      return DRL_OK;
    }
  }
  int64_t first = out->n;
  int32_t whole = -1;
  if (b->ignore_merges) { /* a piece that is a token is that token, whatever the merges would make of it */
    b->level.n = 0;
    for (int64_t i = 0; i < m; ++i) {
      uint8_t u[4];
      int k = drl_utf8_put(drl_byte_level_cp((uint8_t)p[i]), u);
      DRL_TRY(drl_text_append(&b->level, u, k));
    }
    whole = drl_str_map_get(&b->vocab, b->level.s, (size_t)b->level.n);
  }
  if (whole >= 0) {
    DRL_TRY(drl_ids_push(out, whole));
  } else {
    b->initial.n = 0;
    for (int64_t i = 0; i < m; ++i) DRL_TRY(drl_ids_push(&b->initial, b->byte_id[(uint8_t)p[i]]));
    DRL_TRY(drl_bpe_merge(&b->merges, &b->work, b->initial.v, m, out));
  }
  if (cacheable) DRL_TRY(cache_put(b, p, m, out->v + first, out->n - first));
  return DRL_OK;
}

/* Pre-tokenizes s[0..n) through every regex in turn and merges each piece. */
static drl_status encode_span(drl_bpe *b, const char *s, int64_t n, drl_ids *out) {
  if (n <= 0) return DRL_OK;
  drl_spans *cur = &b->spans[0], *next = &b->spans[1];
  if (cur->cap == 0) { /* the whole span starts as one piece */
    cur->v = (drl_span *)malloc(64 * sizeof *cur->v);
    if (!cur->v) return DRL_FAIL(DRL_ERR_OOM, "out of memory for pieces");
    cur->cap = 64;
  }
  cur->v[0].off = 0, cur->v[0].len = n, cur->n = 1;
  for (int r = 0; r < b->n_re; ++r) {
    next->n = 0;
    for (int64_t i = 0; i < cur->n; ++i) DRL_TRY(drl_pretok_split(&b->re[r], s, cur->v[i], next));
    drl_spans *t = cur;
    cur = next, next = t;
  }
  for (int64_t i = 0; i < cur->n; ++i) DRL_TRY(encode_piece(b, s + cur->v[i].off, cur->v[i].len, out));
  return DRL_OK;
}

/* A span between raw added tokens: normalised, then split on the normalized added tokens. */
static drl_status encode_unmatched(drl_bpe *b, const char *s, int64_t n, drl_ids *out) {
  if (n <= 0) return DRL_OK;
  char *norm = NULL;
  int64_t m = n;
  if (b->nfc) DRL_TRY(drl_bpe_nfc(s, n, &norm, &m));
  const char *t = norm ? norm : s;
  drl_status st = DRL_OK;
  int64_t pos = 0, at;
  int32_t which;
  while (st == DRL_OK && find_added(b, &b->normalized, t, m, pos, &at, &which)) {
    st = encode_span(b, t + pos, at - pos, out);
    if (st == DRL_OK) st = drl_ids_push(out, b->added[which].id);
    pos = at + b->added[which].len;
  }
  if (st == DRL_OK) st = encode_span(b, t + pos, m - pos, out);
  free(norm);
  return st;
}

drl_status drl_bpe_encode(void *impl, const char *text, int64_t len, int add_special, drl_ids *out) {
  drl_bpe *b = (drl_bpe *)impl;
  size_t bad = drl_utf8_invalid_at((const uint8_t *)text, (size_t)len);
  if ((int64_t)bad < len)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "encode: the text is not valid UTF-8 at byte offset %zu (byte 0x%02X)", bad,
                    (unsigned char)text[bad]);
  if (add_special)
    for (int32_t i = 0; i < b->n_prefix; ++i) DRL_TRY(drl_ids_push(out, b->prefix[i]));
  int64_t pos = 0, at;
  int32_t which;
  while (find_added(b, &b->raw, text, len, pos, &at, &which)) {
    DRL_TRY(encode_unmatched(b, text + pos, at - pos, out));
    DRL_TRY(drl_ids_push(out, b->added[which].id));
    pos = at + b->added[which].len;
  }
  DRL_TRY(encode_unmatched(b, text + pos, len - pos, out));
  if (add_special)
    for (int32_t i = 0; i < b->n_suffix; ++i) DRL_TRY(drl_ids_push(out, b->suffix[i]));
  return DRL_OK;
}
