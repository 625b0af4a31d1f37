// The GPU tests' shared helpers: DRL_REQUIRE_GPU, which every gpu-labelled test starts with (it skips, visibly, when
// no CUDA device is usable), and DevBuf, a device buffer that frees itself.
#pragma once
#include <gtest/gtest.h>
#include <stdint.h>

#include <cstring>
#include <vector>

extern "C" {
#include "kernels/device.h"
}

#define DRL_REQUIRE_GPU(dev)                                                              \
  do {                                                                                    \
    if (drl_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible on this machine"; \
    ASSERT_EQ(drl_device_open(&(dev), DRL_BACKEND_CUDA, 0), DRL_OK) << drl_last_error(); \
  } while (0)

// A device buffer of `bytes` bytes, freed on scope exit; from a host vector, a device copy of it. An empty buffer
// still gets a (small) allocation, so p is never null after a successful constructor. It keeps its own copy of the
// device: tests close theirs before the buffers go out of scope, and drl_device_close zeroes the struct (a zeroed
// device is the CPU, whose free() must never see a device pointer). The free goes to the default stream, which
// outlives the closed device's own.
struct DevBuf {
  drl_device owner;
  const drl_device *dev = &owner;
  void *p = nullptr;
  size_t bytes = 0;
  DevBuf(const drl_device *d, size_t n_bytes) : owner(*d), bytes(n_bytes) {
    EXPECT_EQ(drl_alloc(dev, &p, bytes ? bytes : 4, "test buffer"), DRL_OK) << drl_last_error();
  }
  template <class T>
  DevBuf(const drl_device *d, const std::vector<T> &host) : DevBuf(d, host.size() * sizeof(T)) {
    if (bytes) {
      EXPECT_EQ(drl_copy_to_device(dev, p, host.data(), bytes), DRL_OK) << drl_last_error();
    }
  }
  ~DevBuf() {
    // The owner's stream may be gone (tests close their device first), and stream 0 does not wait for a
    // non-blocking stream: cudaFree (no pool) waits for the whole device before it frees.
    drl_device f = owner;
    f.stream = nullptr;
    f.mem_pools = 0;
    drl_free(&f, p);
  }
  DevBuf(const DevBuf &) = delete;
  DevBuf &operator=(const DevBuf &) = delete;
  float *f() const { return (float *)p; }
  int32_t *i() const { return (int32_t *)p; }
  // The contents copied back to the host, as bytes / sizeof(T) elements of T.
  template <class T = float>
  std::vector<T> get() const {
    std::vector<T> h(bytes / sizeof(T));
    EXPECT_EQ(drl_copy_to_host(dev, h.data(), p, bytes), DRL_OK) << drl_last_error();
    return h;
  }
};

extern "C" {
#include "models/transformer.h"
}

// The policy the model-level GPU tests compare with the CPU: GQA, three blocks, a vocabulary that is not a power of 2.
inline drl_transformer_config gpu_model_config() {
  drl_transformer_config c = {};
  c.vocab = 50;
  c.d_model = 128;
  c.n_layers = 3;
  c.n_heads = 8;
  c.n_kv_heads = 4;
  c.d_ff = 256;
  c.max_seq = 64;
  c.tied_embeddings = 1;
  c.rope_theta = 10000.0f;
  c.init_std = 0.05f;
  c.norm_eps = 1e-5f;
  return c;
}

// The index of the first element whose bits differ, or -1.
inline int64_t first_diff(const std::vector<float> &a, const std::vector<float> &b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return (int64_t)i;
  return -1;
}

#define EXPECT_SAME_BITS(gpu, cpu, what)                                                                 \
  do {                                                                                                   \
    auto g_ = (gpu);                                                                                     \
    int64_t d_ = first_diff(g_, cpu);                                                                    \
    EXPECT_EQ(d_, -1) << what << ": first differing element " << d_ << " gpu " << (d_ >= 0 ? g_[d_] : 0.0f) \
                      << " cpu " << (d_ >= 0 ? (cpu)[d_] : 0.0f);                                        \
  } while (0)
