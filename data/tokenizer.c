/* The tokenizer interface (tokenizer.h): dispatch, decoding shared by every kind, and the character kind. */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "vocab.h"

/* ---- dispatch ---- */

const char *drl_tokenizer_kind(const drl_tokenizer *t) { return t && t->ops ? t->ops->kind : "none"; }

int32_t drl_tokenizer_vocab_size(const drl_tokenizer *t) { return t && t->ops ? t->ops->vocab_size(t->impl) : 0; }

int32_t drl_tokenizer_token_id(const drl_tokenizer *t, const char *token) {
  if (!t || !t->ops || !token) return -1;
  return t->ops->token_id(t->impl, token, strlen(token));
}

int drl_tokenizer_is_special(const drl_tokenizer *t, int32_t id) {
  const uint8_t *b;
  int64_t len;
  int flags = 0;
  if (!t || !t->ops || t->ops->token_bytes(t->impl, id, &b, &len, &flags) != DRL_OK) {
    drl_clear_error();
    return 0;
  }
  return (flags & DRL_TOKEN_SPECIAL) != 0;
}

drl_status drl_tokenizer_encode(drl_tokenizer *t, const char *text, int64_t len, int add_special, drl_ids *out) {
  if (!t || !t->ops || !out || (!text && len > 0) || len < 0)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "encode: tokenizer and output must be non-NULL, text non-NULL when len > 0");
  out->n = 0;
  return t->ops->encode(t->impl, text ? text : "", len, add_special, out);
}

static drl_status bad_stream_args(void) {
  return DRL_FAIL(DRL_ERR_INVALID_ARG, "decode: tokenizer, stream and output must be non-NULL");
}

drl_status drl_tokenizer_decode(const drl_tokenizer *t, const int32_t *ids, int64_t n, int skip_special,
                                drl_text *out) {
  if (!t || !t->ops || !out || (n > 0 && !ids) || n < 0)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "decode: tokenizer and output must be non-NULL, ids non-NULL when n > 0");
  out->n = 0;
  DRL_TRY(drl_text_append(out, "", 0));
  drl_decode_stream s;
  drl_decode_stream_init(&s, skip_special);
  for (int64_t i = 0; i < n; ++i) {
    drl_status st = drl_decode_stream_push(t, &s, ids[i], out);
    if (st != DRL_OK) return drl_fail_context(st, "decode: position %lld", (long long)i);
  }
  return drl_decode_stream_finish(&s, out);
}

/* ---- streaming decode ---- */

void drl_decode_stream_init(drl_decode_stream *s, int skip_special) {
  memset(s, 0, sizeof *s);
  s->skip_special = skip_special;
}

drl_status drl_decode_stream_finish(drl_decode_stream *s, drl_text *out) {
  if (!s || !out) return bad_stream_args();
  size_t used;
  DRL_TRY(drl_utf8_lossy(s->pending, (size_t)s->n_pending, 1, out, &used));
  s->n_pending = 0;
  return DRL_OK;
}

drl_status drl_decode_stream_push(const drl_tokenizer *t, drl_decode_stream *s, int32_t id, drl_text *out) {
  if (!t || !t->ops || !s || !out) return bad_stream_args();
  const uint8_t *b;
  int64_t len;
  int flags;
  DRL_TRY(t->ops->token_bytes(t->impl, id, &b, &len, &flags));
  if ((flags & DRL_TOKEN_SPECIAL) && s->skip_special) return DRL_OK;
  if (flags & DRL_TOKEN_ADDED) { /* Hugging Face decodes an added token alone, after completing what came before */
    size_t used;
    DRL_TRY(drl_decode_stream_finish(s, out));
    return drl_utf8_lossy(b, (size_t)len, 1, out, &used);
  }
  uint8_t local[256], *buf = local;
  size_t n = (size_t)s->n_pending + (size_t)len;
  if (n > sizeof local && !(buf = (uint8_t *)malloc(n)))
    return DRL_FAIL(DRL_ERR_OOM, "decode: out of memory for a token of %lld bytes", (long long)len);
  memcpy(buf, s->pending, (size_t)s->n_pending);
  memcpy(buf + s->n_pending, b, (size_t)len);
  size_t used = 0;
  drl_status st = drl_utf8_lossy(buf, n, 0, out, &used);
  if (st == DRL_OK) { /* at most 3 bytes of one incomplete character remain */
    s->n_pending = (int)(n - used);
    memcpy(s->pending, buf + used, n - used);
  }
  if (buf != local) free(buf);
  return st;
}

void drl_tokenizer_free(drl_tokenizer *t) {
  if (!t) return;
  if (t->ops && t->ops->free) t->ops->free(t->impl);
  memset(t, 0, sizeof *t);
}

/* ---- the character kind: token id i is the character vocab[i] ---- */

static int32_t char_vocab_size(const void *impl) { return drl_vocab_size((const char *)impl); }

static int32_t char_token_id(const void *impl, const char *token, size_t len) {
  return len == 1 ? drl_vocab_find((const char *)impl, token[0]) : -1;
}

static drl_status char_token_bytes(const void *impl, int32_t id, const uint8_t **bytes, int64_t *len, int *flags) {
  const char *vocab = (const char *)impl;
  int size = drl_vocab_size(vocab);
  if (id < 0 || id >= size)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "id %d is outside the vocabulary (size %d)", (int)id, size);
  *bytes = (const uint8_t *)vocab + id, *len = 1, *flags = 0;
  return DRL_OK;
}

static drl_status char_encode(void *impl, const char *text, int64_t len, int add_special, drl_ids *out) {
  (void)add_special; /* a character vocabulary has no special tokens to add */
  const char *vocab = (const char *)impl;
  for (int64_t i = 0; i < len; ++i) {
    int id = drl_vocab_find(vocab, text[i]);
    if (id < 0)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "encode: byte 0x%02X at offset %lld is not in the vocabulary \"%s\"",
                      (unsigned char)text[i], (long long)i, vocab);
    DRL_TRY(drl_ids_push(out, id));
  }
  return DRL_OK;
}

static const drl_tokenizer_ops kCharOps = {"char", char_vocab_size, char_token_id, char_token_bytes, char_encode,
                                           NULL};

drl_status drl_tokenizer_char(const char *vocab, drl_tokenizer *out) {
  if (!out) return DRL_FAIL(DRL_ERR_INVALID_ARG, "char tokenizer: out is NULL");
  memset(out, 0, sizeof *out);
  DRL_TRY(drl_vocab_check(vocab, 1 << 20));
  out->ops = &kCharOps;
  out->impl = (void *)(uintptr_t)vocab; /* read only: the ops never write through it */
  return DRL_OK;
}
