/* The tokenizer interface: text <-> token ids, whatever the kind. Two kinds implement it: the character vocabulary
 * of the built-in tasks (data/vocab.h) and byte-level BPE from a Hugging Face tokenizer.json (data/bpe.h).
 * A tokenizer is used by one thread at a time (BPE keeps a cache and scratch buffers); load one per thread. */
#ifndef DRL_TOKENIZER_H
#define DRL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "data/text_buf.h"
#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What decoding needs of one id: its bytes, and the flags below. */
enum {
  DRL_TOKEN_ADDED = 1,   /* an added token: decoded on its own (bytes before it are completed or replaced first) */
  DRL_TOKEN_SPECIAL = 2  /* "special": true: dropped when decoding with skip_special */
};

/* The operations one kind supplies (impl is its state). */
typedef struct drl_tokenizer_ops {
  const char *kind; /* "char", "bpe" */
  int32_t (*vocab_size)(const void *impl);
  /* The id of the token whose text is exactly token[0..len), or -1. */
  int32_t (*token_id)(const void *impl, const char *token, size_t len);
  /* The bytes id decodes to and its flags (DRL_TOKEN_ADDED, DRL_TOKEN_SPECIAL); DRL_ERR_INVALID_ARG when id has
   * no token. */
  drl_status (*token_bytes)(const void *impl, int32_t id, const uint8_t **bytes, int64_t *len, int *flags);
  /* Encodes text[0..len) into out (emptied first); add_special adds the post-processor's tokens. */
  drl_status (*encode)(void *impl, const char *text, int64_t len, int add_special, drl_ids *out);
  void (*free)(void *impl);
} drl_tokenizer_ops;

typedef struct drl_tokenizer {
  const drl_tokenizer_ops *ops;
  void *impl;
} drl_tokenizer;

/* A tokenizer over the character vocabulary vocab (not copied: it must outlive the tokenizer; nothing to free). */
drl_status drl_tokenizer_char(const char *vocab, drl_tokenizer *out);

/* "char" or "bpe". */
const char *drl_tokenizer_kind(const drl_tokenizer *t);

/* Number of ids (the largest id + 1). */
int32_t drl_tokenizer_vocab_size(const drl_tokenizer *t);

/* The id of the token spelled exactly `token` (NUL-terminated; e.g. "<|im_end|>", or "." for a character
 * vocabulary), or -1. */
int32_t drl_tokenizer_token_id(const drl_tokenizer *t, const char *token);

/* 1 when id is a special token ("special": true), else 0. */
int drl_tokenizer_is_special(const drl_tokenizer *t, int32_t id);

/* Encodes text[0..len) into out (emptied first). add_special != 0 adds what the tokenizer's post-processor adds
 * (Llama-3: <|begin_of_text|> first); 0 is Hugging Face's add_special_tokens=False. Special tokens written in the
 * text are always recognised. Text that is not valid UTF-8 is DRL_ERR_INVALID_ARG naming the byte offset. */
drl_status drl_tokenizer_encode(drl_tokenizer *t, const char *text, int64_t len, int add_special, drl_ids *out);

/* Decodes ids[0..n) into out (emptied first), as Hugging Face's decode: bytes that are not valid UTF-8 become
 * U+FFFD; skip_special drops the special tokens. An id without a token is DRL_ERR_INVALID_ARG naming it. */
drl_status drl_tokenizer_decode(const drl_tokenizer *t, const int32_t *ids, int64_t n, int skip_special,
                                drl_text *out);

/* Streaming decode: the bytes of an incomplete UTF-8 character are held back until the token that completes it. */
typedef struct drl_decode_stream {
  uint8_t pending[4];
  int n_pending;
  int skip_special;
} drl_decode_stream;

/* A fresh stream. */
void drl_decode_stream_init(drl_decode_stream *s, int skip_special);

/* Appends to out the text that id completes (possibly nothing). */
drl_status drl_decode_stream_push(const drl_tokenizer *t, drl_decode_stream *s, int32_t id, drl_text *out);

/* Ends the stream: held-back bytes (an incomplete character) become U+FFFD in out. */
drl_status drl_decode_stream_finish(drl_decode_stream *s, drl_text *out);

/* Frees what a loaded tokenizer holds and zeroes *t (a char tokenizer holds nothing). */
void drl_tokenizer_free(drl_tokenizer *t);

#ifdef __cplusplus
}
#endif
#endif /* DRL_TOKENIZER_H */
