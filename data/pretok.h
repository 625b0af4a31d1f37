/* Regex pre-tokenization (tokenizers' Split with behavior Isolated, and ByteLevel's built-in GPT-2 pattern): the
 * matches and the gaps between them all become pieces. PCRE2 runs the patterns (PCRE2_UTF | PCRE2_UCP), with \s and
 * \S narrowed to the white space Oniguruma knows (research/real-models.md §3: PCRE2's \s also takes U+180E). */
#ifndef DRL_PRETOK_H
#define DRL_PRETOK_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ByteLevel's pattern when use_regex is true (GPT-2). */
#define DRL_PRETOK_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

typedef struct drl_pretok_regex {
  void *code;       /* pcre2_code_8 */
  void *match_data; /* pcre2_match_data_8 */
  void *context;    /* pcre2_match_context_8 with a larger JIT stack */
  void *jit_stack;
  int jit;          /* the pattern is JIT-compiled */
} drl_pretok_regex;

/* One piece: bytes [off, off + len) of the text. */
typedef struct drl_span {
  int64_t off, len;
} drl_span;

typedef struct drl_spans {
  drl_span *v;
  int64_t n, cap;
} drl_spans;

/* Compiles pattern[0..len) (as in tokenizer.json); an error names the offset and PCRE2's message. */
drl_status drl_pretok_compile(const char *pattern, size_t len, drl_pretok_regex *out);

/* Appends to out the pieces of text[span.off .. span.off + span.len): every match and every gap, in order, none
 * empty. text must be valid UTF-8 (not checked again here). */
drl_status drl_pretok_split(drl_pretok_regex *re, const char *text, drl_span span, drl_spans *out);

void drl_pretok_free(drl_pretok_regex *re);
void drl_spans_free(drl_spans *s);

#ifdef __cplusplus
}
#endif
#endif /* DRL_PRETOK_H */
