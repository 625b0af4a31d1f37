/* Character-level tokenizer: token id i is the character vocab[i] of a NUL-terminated vocabulary string
 * (the `vocab` attribute of a dataset, DESIGN §9). Every built-in task's vocabulary ends its answers with
 * '.', the end-of-sequence character. */
#ifndef DRL_VOCAB_H
#define DRL_VOCAB_H

#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The end-of-sequence character of every built-in task. */
#define DRL_VOCAB_EOS_CHAR '.'

/* Number of tokens (the string length of vocab); 0 for NULL. */
int drl_vocab_size(const char *vocab);

/* The id of character ch, or -1 when vocab lacks it (or ch is NUL). */
int drl_vocab_find(const char *vocab, char ch);

/* The id of the end-of-sequence character '.', or -1 when vocab has none. */
int drl_vocab_eos(const char *vocab);

/* OK iff vocab is non-NULL, non-empty, shorter than cap characters (room for the NUL) and has no repeated character. */
drl_status drl_vocab_check(const char *vocab, int cap);

/* Encodes text into ids out[0..*n); an unknown character is DRL_ERR_INVALID_ARG naming it and its position.
 * When cap is too small nothing beyond cap is written, *n is the length needed and the status DRL_ERR_INVALID_ARG. */
drl_status drl_vocab_encode(const char *vocab, const char *text, int32_t *out, int64_t cap, int64_t *n);

/* Decodes ids[0..n) into the NUL-terminated buf (needs cap >= n + 1); an id outside the vocabulary is an error. */
drl_status drl_vocab_decode(const char *vocab, const int32_t *ids, int64_t n, char *buf, int64_t cap);

#ifdef __cplusplus
}
#endif
#endif /* DRL_VOCAB_H */
