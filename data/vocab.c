#include "vocab.h"

#include <stdio.h>
#include <string.h>

/* A character as it should appear in a message: itself when printable, \xNN otherwise. */
static const char *show_char(char ch, char buf[8]) {
  unsigned char u = (unsigned char)ch;
  if (u >= 0x20 && u < 0x7F)
    snprintf(buf, 8, "'%c'", ch);
  else
    snprintf(buf, 8, "'\\x%02X'", u);
  return buf;
}

int drl_vocab_size(const char *vocab) { return vocab ? (int)strlen(vocab) : 0; }

int drl_vocab_find(const char *vocab, char ch) {
  if (!vocab || ch == '\0') return -1;
  const char *p = strchr(vocab, ch);
  return p ? (int)(p - vocab) : -1;
}

int drl_vocab_eos(const char *vocab) { return drl_vocab_find(vocab, DRL_VOCAB_EOS_CHAR); }

drl_status drl_vocab_check(const char *vocab, int cap) {
  if (!vocab) return DRL_FAIL(DRL_ERR_INVALID_ARG, "vocabulary is NULL");
  if (cap <= 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "vocabulary capacity %d must be positive", cap);
  int len = 0; /* bounded: vocab may come unterminated from a file buffer */
  while (len < cap && vocab[len] != '\0') ++len;
  if (len == 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "vocabulary is empty");
  if (len == cap)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "vocabulary has %d or more characters (at most %d allowed)", cap, cap - 1);
  /* A repeated character would make encoding ambiguous. */
  for (int i = 0; i < len; ++i) {
    const char *first = strchr(vocab, vocab[i]);
    if ((int)(first - vocab) != i) {
      char b[8];
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "vocabulary repeats character %s (ids %d and %d)",
                      show_char(vocab[i], b), (int)(first - vocab), i);
    }
  }
  return DRL_OK;
}

drl_status drl_vocab_encode(const char *vocab, const char *text, int32_t *out, int64_t cap, int64_t *n) {
  if (!vocab || !text || !n) return DRL_FAIL(DRL_ERR_INVALID_ARG, "encode: vocab, text and n must be non-NULL");
  if (cap < 0 || (cap > 0 && !out)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "encode: bad output buffer (cap %lld)",
                                                    (long long)cap);
  int64_t len = (int64_t)strlen(text);
  for (int64_t i = 0; i < len; ++i) {
    int id = drl_vocab_find(vocab, text[i]);
    if (id < 0) {
      char b[8];
      *n = 0;
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "encode: character %s at position %lld is not in the vocabulary \"%s\"",
                      show_char(text[i], b), (long long)i, vocab);
    }
    if (i < cap) out[i] = id;
  }
  *n = len;
  if (len > cap)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "encode: %lld tokens do not fit in a buffer of %lld", (long long)len,
                    (long long)cap);
  return DRL_OK;
}

drl_status drl_vocab_decode(const char *vocab, const int32_t *ids, int64_t n, char *buf, int64_t cap) {
  if (!vocab || !buf || (n > 0 && !ids) || n < 0)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "decode: vocab and buf must be non-NULL, ids non-NULL when n > 0, n >= 0");
  if (cap <= n) { /* room for the NUL */
    if (cap > 0) buf[0] = '\0';
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "decode: %lld tokens need a buffer of %lld, got %lld", (long long)n,
                    (long long)n + 1, (long long)cap);
  }
  int size = drl_vocab_size(vocab);
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= size) {
      buf[0] = '\0';
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "decode: id %d at position %lld is outside the vocabulary (size %d)",
                      (int)ids[i], (long long)i, size);
    }
    buf[i] = vocab[ids[i]];
  }
  buf[n] = '\0';
  return DRL_OK;
}
