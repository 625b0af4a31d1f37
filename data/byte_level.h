/* The ByteLevel alphabet of GPT-2 and every byte-level BPE since: bytes 33-126, 161-172 and 174-255 are the
 * characters of the same code point; the other 68 bytes map in order to U+0100.. (0x20 -> U+0120 'Ġ'). */
#ifndef DRL_BYTE_LEVEL_H
#define DRL_BYTE_LEVEL_H

#include <stdint.h>

/* The code point byte b stands for. */
static inline uint32_t drl_byte_level_cp(uint8_t b) {
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
  if (b <= 32) return 256u + b;
  if (b <= 160) return 289u + (b - 127u);
  return 323u; /* 173, the soft hyphen */
}

/* The byte code point cp stands for, or -1 when cp is outside the alphabet. */
static inline int drl_byte_level_byte(uint32_t cp) {
  if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
  if (cp >= 256 && cp <= 288) return (int)(cp - 256);
  if (cp >= 289 && cp <= 322) return (int)(cp - 289 + 127);
  if (cp == 323) return 173;
  return -1;
}

#endif /* DRL_BYTE_LEVEL_H */
