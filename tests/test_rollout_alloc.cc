// The rollout's decode loop allocates nothing: after a first call has sized the batch's buffers, a rollout of
// prefill and every decode step makes no malloc, calloc or realloc call. The binary counts them by defining those
// functions over glibc's own (so it stands alone, and skips under a sanitizer, which replaces the allocator).
#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <random>
#include <vector>

#include "test_util.h"

extern "C" {
#include "kernels/device.h"
#include "models/transformer.h"
#include "samplers/rollout.h"
}

#if defined(__SANITIZE_ADDRESS__)
#define DRL_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define DRL_TEST_SANITIZED 1
#endif
#endif

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
}  // namespace

#ifndef DRL_TEST_SANITIZED
extern "C" {
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *malloc(size_t n) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
void *calloc(size_t n, size_t size) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
}
#endif

TEST(RolloutAlloc, DecodeLoopAllocatesNothing) {
#ifdef DRL_TEST_SANITIZED
  GTEST_SKIP() << "a sanitizer replaces the allocator, so its calls cannot be counted here";
#else
  drl_device dev = cpu_device();
  drl_transformer_config c = {};
  c.vocab = 11;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.d_ff = 48;
  c.max_seq = 40;
  c.tied_embeddings = 1;
  c.rope_theta = 10000.0f;
  c.init_std = 0.3f;
  c.norm_eps = 1e-5f;
  const int n = 3, G = 8, P = 6, max_new = 20;
  drl_transformer m;
  ASSERT_EQ(drl_transformer_create(&m, &c, &dev, n * G, P + max_new, 3), DRL_OK) << drl_last_error();
  drl_rollout ro;
  ASSERT_EQ(drl_rollout_create(&ro, &m, n * G, G, P, max_new), DRL_OK) << drl_last_error();
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2};
  std::vector<int64_t> offsets = {0, 6, 8, 11};
  drl_rollout_params p = {G, max_new, 1.0f, 0, 1.0f, c.vocab - 1, 9, 0, 0, 0, nullptr, 0, nullptr, nullptr};
  drl_rollout_batch b{};
  ASSERT_EQ(drl_rollout_generate(&ro, &m, tokens.data(), offsets.data(), n, &p, &b), DRL_OK) << drl_last_error();
  int64_t first = b.generated_tokens;
  p.step = 1;
  counting = true;
  drl_status st = drl_rollout_generate(&ro, &m, tokens.data(), offsets.data(), n, &p, &b);
  counting = false;
  ASSERT_EQ(st, DRL_OK) << drl_last_error();
  EXPECT_GT(first + b.generated_tokens, (int64_t)2 * n * G * 2) << "the rollouts decode several steps";
  EXPECT_EQ(allocations.load(), 0) << "allocations during a rollout after the first";
  drl_rollout_batch_free(&b);
  drl_rollout_free(&ro);
  drl_transformer_free(&m);
#endif
}
