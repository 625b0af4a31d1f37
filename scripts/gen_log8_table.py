#!/usr/bin/env python3
"""Prints the LOG8 decode table of engine/spsa_codec.c as a C array of float32 bit patterns.

Byte b: bit 7 = sign, k = b & 0x7f; k = 0 decodes to +0.0f, otherwise |value| = exp((k - 64) / 8). Each entry is
the correctly rounded (nearest, ties to even) float32 of the true value: exp is evaluated with 60 significant
digits, and the nearest float32 is chosen by exact comparison among the candidates around it, so no double
rounding through float64 can creep in. Standard library only.

usage: scripts/gen_log8_table.py > table.inc
"""
import decimal
import struct

decimal.getcontext().prec = 60
D = decimal.Decimal


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bits_f32(b):
    return struct.unpack("<f", struct.pack("<I", b))[0]


def nearest_f32_bits(v):
    """The bits of the float32 nearest to the positive Decimal v (ties to even)."""
    guess = f32_bits(float(v))  # within one float32 ulp of the answer
    best = None
    for b in (guess - 1, guess, guess + 1):
        d = abs(D(bits_f32(b)) - v)  # Decimal(float) is exact
        if best is None or d < best[0] or (d == best[0] and b % 2 == 0):
            best = (d, b)
    return best[1]


def main():
    mags = [0] + [nearest_f32_bits((D(k - 64) / 8).exp()) for k in range(1, 128)]
    words = mags + [m | 0x80000000 if m else 0 for m in mags]  # k = 0 is +0.0f for both signs
    print("static const uint32_t log8_bits[256] = {")
    for row in range(0, 256, 6):
        print("    " + " ".join("0x%08Xu," % w for w in words[row:row + 6]))
    print("};")


if __name__ == "__main__":
    main()
