/* The state of a loaded byte-level BPE tokenizer, shared by its loader (bpe.c) and its encoder (bpe_encode.c). */
#ifndef DRL_BPE_INTERNAL_H
#define DRL_BPE_INTERNAL_H

#include <stdint.h>

#include "bpe.h"
#include "bpe_merge.h"
#include "pretok.h"
#include "str_map.h"

/* An added token: matched in the text before anything else. */
typedef struct drl_bpe_added {
  int32_t id;
  int special, normalized;
  char *match;  /* what is matched: the content, NFC-normalised when normalized and the tokenizer has NFC */
  int32_t len;
} drl_bpe_added;

/* The added tokens of one kind (raw or normalized), by first byte, longest first (leftmost-longest matching). */
typedef struct drl_bpe_added_index {
  int32_t start[257]; /* tokens with first byte b: order[start[b] .. start[b + 1]) */
  int32_t *order;     /* indices into drl_bpe.added */
} drl_bpe_added_index;

#define DRL_BPE_MAX_REGEX 8

typedef struct drl_bpe {
  char *file;
  int32_t vocab_size;
  drl_str_map vocab;      /* model vocabulary: token text (ByteLevel characters) -> id */
  drl_str_map added_ids;  /* added token content -> id */
  int32_t byte_id[256];   /* the id of each single byte's token */
  drl_bpe_merges merges;
  int ignore_merges, nfc;
  drl_bpe_added *added;
  int32_t n_added;
  drl_bpe_added_index raw, normalized;
  drl_pretok_regex re[DRL_BPE_MAX_REGEX];
  int n_re;
  int32_t *prefix, *suffix; /* the post-processor's ids around a single sequence */
  int32_t n_prefix, n_suffix;
  /* decoding: the bytes of id i are bytes[off[i] .. off[i + 1]); flags: DRL_TOKEN_ADDED, DRL_TOKEN_SPECIAL,
   * BPE_TOKEN_PRESENT */
  uint8_t *bytes;
  int64_t *off;
  uint8_t *flags;
  /* encoding scratch and the per-piece cache */
  drl_str_map cache; /* piece bytes -> offset into cache_ids: [count, ids...] */
  drl_ids cache_ids;
  drl_spans spans[2];
  drl_bpe_work work;
  drl_ids initial;
  drl_text level; /* a piece in ByteLevel characters */
} drl_bpe;

#define BPE_TOKEN_PRESENT 4

/* The tokenizer-interface encode of a drl_bpe (bpe_encode.c). */
drl_status drl_bpe_encode(void *impl, const char *text, int64_t len, int add_special, drl_ids *out);

/* s[0..n) NFC-normalised into a malloc'd *out (*out_len bytes), or *out = NULL when s is already NFC. */
drl_status drl_bpe_nfc(const char *s, int64_t n, char **out, int64_t *out_len);

#endif /* DRL_BPE_INTERNAL_H */
