// Incremental decoding and rollout on the GPU against the CPU. Prefill + decode logits: within 1e-4 of the CPU model's
// (cuBLAS orders its sums differently). A GPU rollout's recorded log-probs: within 1e-4 of the GPU training forward on
// the same tokens, and reproducible run to run. The KV append and decode attention kernels are in the op table
// (test_gpu_ops).
#include <cmath>  // before the C headers: they include <math.h> inside extern "C"
#include <cstring>
#include <random>
#include <vector>

#include "../transformer_arch.h"
#include "gpu_skip.h"

extern "C" {
#include "models/kv_cache.h"
#include "models/transformer.h"
#include "samplers/rollout.h"
}

// The same model on both devices: prefill and 10 decode steps give the same logits within 1e-4 of their scale.
TEST(GpuKvCache, PrefillAndDecodeMatchCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu;
  ASSERT_EQ(drl_device_open(&cpu, DRL_BACKEND_CPU, 0), DRL_OK);
  drl_transformer_config c = gpu_model_config();
  const int B = 5, P = 12, S = 10, G = 2, V = c.vocab;
  drl_transformer mc, mg;
  ASSERT_EQ(drl_transformer_create(&mc, &c, &cpu, B, P, 42), DRL_OK);
  ASSERT_EQ(drl_transformer_create(&mg, &c, &gpu, B, P, 42), DRL_OK) << drl_last_error();
  drl_kv_cache kc, kg;
  ASSERT_EQ(drl_kv_cache_create(&kc, &mc, B * G, B, P, S), DRL_OK);
  ASSERT_EQ(drl_kv_cache_create(&kg, &mg, B * G, B, P, S), DRL_OK) << drl_last_error();
  std::mt19937 rng(9);
  std::vector<int32_t> prompts((size_t)B * P), rs = {0, 4, 11, 2, 7};
  for (auto &x : prompts) x = (int32_t)(rng() % V);
  std::vector<float> lc((size_t)B * G * V), lg(lc.size());
  ASSERT_EQ(drl_kv_cache_prefill(&kc, &mc, prompts.data(), rs.data(), B, P, G, 1, 0.9f, lc.data()), DRL_OK);
  ASSERT_EQ(drl_kv_cache_prefill(&kg, &mg, prompts.data(), rs.data(), B, P, G, 1, 0.9f, lg.data()), DRL_OK)
      << drl_last_error();
  auto rel = [&](int n) {
    double d = 0, s = 1e-12;
    for (int i = 0; i < n; ++i) {
      d = std::fmax(d, std::fabs((double)lg[i] - lc[i]));
      s = std::fmax(s, std::fabs((double)lc[i]));
    }
    return d / s;
  };
  EXPECT_LT(rel(B * V), 1e-4) << "prefill";
  std::vector<int32_t> slots(B * G), tok(B * G);
  for (int i = 0; i < B * G; ++i) slots[i] = B * G - 1 - i;
  for (int s = 0; s < S; ++s) {
    for (auto &x : tok) x = (int32_t)(rng() % V);
    ASSERT_EQ(drl_kv_cache_decode(&kc, &mc, tok.data(), slots.data(), B * G, 0.9f, lc.data()), DRL_OK);
    ASSERT_EQ(drl_kv_cache_decode(&kg, &mg, tok.data(), slots.data(), B * G, 0.9f, lg.data()), DRL_OK) << drl_last_error();
    EXPECT_LT(rel(B * G * V), 1e-4) << "decode step " << s;
  }
  drl_kv_cache_free(&kc);
  drl_kv_cache_free(&kg);
  drl_transformer_free(&mc);
  drl_transformer_free(&mg);
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK);
  drl_device_close(&gpu);
}

// The pretrained-architecture features (heads of 24, q/k/v biases, q/k norms, padding ids, llama3 RoPE scaling),
// biases and norm gains redrawn: prefill and decode logits (over the scored ids) within 1e-4 of the CPU's.
TEST(GpuKvCache, PretrainedArchitectureMatchesCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu;
  ASSERT_EQ(drl_device_open(&cpu, DRL_BACKEND_CPU, 0), DRL_OK);
  drl_transformer_config c = gpu_model_config();
  enable_all_features(&c, 24, 45);
  const int B = 4, P = 10, S = 8, V = drl_transformer_vocab_used(&c);
  drl_transformer mc, mg;
  ASSERT_EQ(drl_transformer_create(&mc, &c, &cpu, B, P, 46), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_transformer_create(&mg, &c, &gpu, B, P, 46), DRL_OK) << drl_last_error();
  randomize_vectors(mc.ps.layout, mc.ps.params, 47);
  ASSERT_EQ(drl_copy_to_device(&gpu, mg.ps.params, mc.ps.params, (size_t)mc.ps.layout.total * 4), DRL_OK);
  drl_kv_cache kc, kg;
  ASSERT_EQ(drl_kv_cache_create(&kc, &mc, B, B, P, S), DRL_OK);
  ASSERT_EQ(drl_kv_cache_create(&kg, &mg, B, B, P, S), DRL_OK) << drl_last_error();
  std::mt19937 rng(10);
  std::vector<int32_t> prompts((size_t)B * P), rs = {0, 3, 9, 5};
  for (auto &x : prompts) x = (int32_t)(rng() % c.vocab);
  std::vector<float> lc((size_t)B * V), lg(lc.size());
  auto rel = [&]() {
    double d = 0, s = 1e-12;
    for (size_t i = 0; i < lc.size(); ++i) {
      d = std::fmax(d, std::fabs((double)lg[i] - lc[i]));
      s = std::fmax(s, std::fabs((double)lc[i]));
    }
    return d / s;
  };
  ASSERT_EQ(drl_kv_cache_prefill(&kc, &mc, prompts.data(), rs.data(), B, P, 1, 1, 0.9f, lc.data()), DRL_OK);
  ASSERT_EQ(drl_kv_cache_prefill(&kg, &mg, prompts.data(), rs.data(), B, P, 1, 1, 0.9f, lg.data()), DRL_OK)
      << drl_last_error();
  EXPECT_LT(rel(), 1e-4) << "prefill";
  std::vector<int32_t> tok(B);
  for (int s = 0; s < S; ++s) {
    for (auto &x : tok) x = (int32_t)(rng() % c.vocab);
    ASSERT_EQ(drl_kv_cache_decode(&kc, &mc, tok.data(), nullptr, B, 0.9f, lc.data()), DRL_OK);
    ASSERT_EQ(drl_kv_cache_decode(&kg, &mg, tok.data(), nullptr, B, 0.9f, lg.data()), DRL_OK) << drl_last_error();
    EXPECT_LT(rel(), 1e-4) << "decode step " << s;
  }
  drl_kv_cache_free(&kc);
  drl_kv_cache_free(&kg);
  drl_transformer_free(&mc);
  drl_transformer_free(&mg);
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK);
  drl_device_close(&gpu);
}

// A GPU rollout records the log-probs the GPU training forward computes for its tokens, and is reproducible.
TEST(GpuRollout, LogprobsMatchGpuTrainingForward) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_transformer_config c = gpu_model_config();
  const int n = 4, G = 8, max_new = 16, P = 10, rows = n * G, T = P + max_new;
  drl_transformer m;
  ASSERT_EQ(drl_transformer_create(&m, &c, &gpu, rows, T, 42), DRL_OK) << drl_last_error();
  drl_rollout ro;
  ASSERT_EQ(drl_rollout_create(&ro, &m, rows, G, P, max_new), DRL_OK) << drl_last_error();
  std::mt19937 rng(11);
  std::vector<int32_t> tokens;
  std::vector<int64_t> offsets = {0};
  for (int i = 0; i < n; ++i) {
    int len = P - 3 * (i % 3);
    for (int t = 0; t < len; ++t) tokens.push_back((int32_t)(rng() % c.vocab));
    offsets.push_back((int64_t)tokens.size());
  }
  drl_rollout_params p = {G, max_new, 0.8f, 20, 0.95f, 3, 7, 2, 0, 0, nullptr, 0, nullptr, nullptr};
  drl_rollout_batch b{}, again{};
  ASSERT_EQ(drl_rollout_generate(&ro, &m, tokens.data(), offsets.data(), n, &p, &b), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_rollout_generate(&ro, &m, tokens.data(), offsets.data(), n, &p, &again), DRL_OK);
  EXPECT_EQ(0, memcmp(b.tokens, again.tokens, (size_t)rows * T * sizeof(int32_t))) << "reproducible on the GPU";
  std::vector<int32_t> targets((size_t)rows * T, -1);
  for (size_t i = 0; i + 1 < targets.size(); ++i)
    if (b.mask[i]) targets[i] = b.tokens[i + 1];
  std::vector<float> lp((size_t)rows * T), ent(lp.size());
  ASSERT_EQ(drl_transformer_forward(&m, b.tokens, targets.data(), b.row_start, rows, T, p.temperature, lp.data(),
                                    ent.data()),
            DRL_OK)
      << drl_last_error();
  double worst = 0, worst_ent = 0;
  for (size_t i = 0; i < lp.size(); ++i)
    if (b.mask[i]) {
      worst = std::fmax(worst, std::fabs((double)b.logprob[i] - lp[i]));
      worst_ent = std::fmax(worst_ent, std::fabs((double)b.entropy[i] - ent[i]));
    }
  EXPECT_GT(b.generated_tokens, 0);
  EXPECT_LT(worst, 1e-4);
  EXPECT_LT(worst_ent, 1e-4);
  std::printf("[ measured ] GPU rollout vs GPU training log-probs: max |diff| %.3g, entropy %.3g\n", worst, worst_ent);
  drl_rollout_batch_free(&b);
  drl_rollout_batch_free(&again);
  drl_rollout_free(&ro);
  drl_transformer_free(&m);
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK);
  drl_device_close(&gpu);
}
