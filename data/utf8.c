#include "utf8.h"

/* The number of bytes of the character a lead byte starts (0: not a lead byte), and the range its second byte
 * must lie in (Unicode Table 3-7: no overlongs, no surrogates, nothing above U+10FFFF). */
static int lead_len(uint8_t b, uint8_t *lo, uint8_t *hi) {
  *lo = 0x80, *hi = 0xBF;
  if (b < 0x80) return 1;
  if (b < 0xC2) return 0;
  if (b < 0xE0) return 2;
  if (b < 0xF0) {
    if (b == 0xE0) *lo = 0xA0;
    if (b == 0xED) *hi = 0x9F;
    return 3;
  }
  if (b < 0xF5) {
    if (b == 0xF0) *lo = 0x90;
    if (b == 0xF4) *hi = 0x8F;
    return 4;
  }
  return 0;
}

/* How many bytes from s[0] form the start of a well-formed character (0 when s[0] is no lead byte); *need is the
 * length of the full character. */
static int valid_prefix(const uint8_t *s, size_t n, int *need) {
  uint8_t lo, hi;
  int len = lead_len(s[0], &lo, &hi);
  *need = len;
  if (len <= 1) return len;
  int k = 1;
  for (; k < len && (size_t)k < n; ++k) {
    uint8_t c = s[k];
    if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
  }
  return k;
}

int drl_utf8_char(const uint8_t *s, size_t n, uint32_t *cp) {
  if (n == 0) return 0;
  int need, k = valid_prefix(s, n, &need);
  if (k == 0 || k < need) return 0;
  uint32_t c;
  switch (need) {
    case 1: c = s[0]; break;
    case 2: c = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F); break;
    case 3: c = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F); break;
    default:
      c = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
          (s[3] & 0x3F);
  }
  *cp = c;
  return need;
}

size_t drl_utf8_invalid_at(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) { /* ASCII runs are the common case */
      ++i;
      continue;
    }
    uint32_t cp;
    int k = drl_utf8_char(s + i, n - i, &cp);
    if (k == 0) return i;
    i += (size_t)k;
  }
  return n;
}

drl_status drl_utf8_lossy(const uint8_t *s, size_t n, int final, drl_text *out, size_t *consumed) {
  static const uint8_t kReplacement[3] = {0xEF, 0xBF, 0xBD};
  size_t i = 0, run = 0; /* s[run..i) is well-formed and not yet appended */
  while (i < n) {
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    int need, k = valid_prefix(s + i, n - i, &need);
    if (k > 0 && k == need) {
      i += (size_t)k;
      continue;
    }
    if (k > 0 && i + (size_t)k == n && !final) break; /* incomplete at the end: wait for more bytes */
    DRL_TRY(drl_text_append(out, s + run, (int64_t)(i - run)));
    DRL_TRY(drl_text_append(out, kReplacement, 3));
    i += (size_t)(k > 0 ? k : 1);
    run = i;
  }
  DRL_TRY(drl_text_append(out, s + run, (int64_t)(i - run)));
  if (consumed) *consumed = i;
  return DRL_OK;
}

int drl_utf8_put(uint32_t cp, uint8_t buf[4]) {
  if (cp < 0x80) {
    buf[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    buf[0] = (uint8_t)(0xC0 | (cp >> 6));
    buf[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    buf[0] = (uint8_t)(0xE0 | (cp >> 12));
    buf[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    buf[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  buf[0] = (uint8_t)(0xF0 | (cp >> 18));
  buf[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
  buf[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
  buf[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}
