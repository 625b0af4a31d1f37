/* LOG8: the one-byte codec of a decentralised SPSA step (DESIGN.md section 8). Bit 7 = sign (1 = negative), bits 0-6 =
 * k in [0, 127]; k = 0 decodes to +0.0f (whatever the sign bit), otherwise |value| = L_k = exp((k - 64) / 8): levels
 * from exp(-63/8) ~ 3.8e-4 to exp(63/8) ~ 2.6e3, ratio e^(1/8). Every rank, the sender included, applies the decoded
 * value, so decoding is a lookup in a table of float32 bit patterns (scripts/gen_log8_table.py), never exp() at run
 * time: libm differs across platforms. Encoding uses only the table, compares and IEEE double arithmetic, so it too
 * gives the same byte everywhere. */
#ifndef DRL_SPSA_CODEC_H
#define DRL_SPSA_CODEC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The decoded value of a LOG8 byte (a table lookup). */
float drl_spsa_codec_decode(uint8_t b);

/* Encodes a finite g by stochastic rounding in value space with the uniform u in [0, 1): for L_k <= |g| < L_{k+1}
 * (L_0 = 0) it picks k + 1 when u < (|g| - L_k) / (L_{k+1} - L_k) (in double from the table values), else k, so
 * E[decode] = g for |g| <= L_127; |g| >= L_127 saturates to 127. The level is found by a search over the table, not
 * by log(). Zero (either sign, or rounded down to level 0) is the byte 0x00. A non-finite g is the caller's bug: it
 * gives 0x00, so the caller must check g first. */
uint8_t drl_spsa_codec_encode(float g, float u);

#ifdef __cplusplus
}
#endif

#endif /* DRL_SPSA_CODEC_H */
