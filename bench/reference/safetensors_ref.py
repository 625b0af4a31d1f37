"""Writes safetensors files with the reference library (safetensors' own numpy writer), so dynrl's reader is checked
against files it did not write: tests/fixtures/safetensors/peer.safetensors (tests/test_safetensors.cc checks every
value) and the seed corpus of tests/fuzz/fuzz_safetensors.c.

    pip install safetensors numpy && python bench/reference/safetensors_ref.py
"""
import os

import numpy as np
from safetensors.numpy import save, save_file

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def peer_tensors():
    # The values tests/test_safetensors.cc expects (PeerFileReads).
    return {
        "model.w": ((np.arange(12, dtype=np.float32) - 5) * 0.375).reshape(3, 4),
        "model.h": np.array([1.0, -2.0, 2.0**-24, np.inf, 1.0 / 3.0], dtype=np.float16),
        "model.i": np.array([-3, 1 << 40], dtype=np.int64),
        "model.s": np.array(7.5, dtype=np.float32),
        "model.e": np.zeros((0, 3), dtype=np.float32),
    }


def main():
    fixtures = os.path.join(root, "tests", "fixtures", "safetensors")
    os.makedirs(fixtures, exist_ok=True)
    save_file(peer_tensors(), os.path.join(fixtures, "peer.safetensors"), metadata={"format": "pt"})

    corpus = os.path.join(root, "tests", "fuzz", "corpus", "fuzz_safetensors")
    os.makedirs(corpus, exist_ok=True)
    seeds = {
        "peer": save(peer_tensors(), metadata={"format": "pt"}),
        "one_f32": save({"a": np.ones((2, 2), dtype=np.float32)}),
        "f16_u8": save({"x": np.arange(3, dtype=np.uint8), "y": np.full(5, 0.5, dtype=np.float16)}),
        "empty": save({}),
        "bool_i32": save({"b": np.array([True, False]), "i": np.array([7], dtype=np.int32)}),
    }
    for name, data in seeds.items():
        with open(os.path.join(corpus, name + ".safetensors"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
