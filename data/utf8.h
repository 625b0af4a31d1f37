/* UTF-8: validation, one-character decoding, and the lossy conversion of Hugging Face's decode (Python's
 * errors="replace": each maximal invalid subpart becomes U+FFFD). */
#ifndef DRL_UTF8_H
#define DRL_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "data/text_buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of the well-formed character at s[0..n) (1..4) with *cp its code point, or 0 when s starts no well-formed
 * character (*cp untouched). */
int drl_utf8_char(const uint8_t *s, size_t n, uint32_t *cp);

/* The offset of the first byte that is not part of well-formed UTF-8 in s[0..n), or n when all of it is. */
size_t drl_utf8_invalid_at(const uint8_t *s, size_t n);

/* Appends s[0..n) to out with every maximal invalid subpart replaced by U+FFFD. When final is 0, a trailing
 * incomplete but so far well-formed character is not consumed; returns the bytes consumed (n when final). */
drl_status drl_utf8_lossy(const uint8_t *s, size_t n, int final, drl_text *out, size_t *consumed);

/* Appends the UTF-8 encoding of cp (< 0x110000) to buf; returns its length. */
int drl_utf8_put(uint32_t cp, uint8_t buf[4]);

#ifdef __cplusplus
}
#endif
#endif /* DRL_UTF8_H */
