// The Hugging Face parity fixtures (tests/fixtures/hf: Llama with llama3 RoPE scaling, Qwen2 with biases, Qwen3 with
// q/k norms) on the GPU against the CPU: the same weights loaded into both, then log-probs and entropies of a batch
// and every gradient of the summed log-probs. tests/test_hf_parity.cc ties the CPU to transformers itself.
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gpu_skip.h"
#include "../test_util.h"

extern "C" {
#include "engine/hf_model.h"
}

namespace {

double rel_err(const float *a, const float *b, int64_t n) {
  double d = 0, s = 1e-30;
  for (int64_t i = 0; i < n; ++i) {
    d = std::fmax(d, std::fabs((double)a[i] - b[i]));
    s = std::fmax(s, std::fabs((double)b[i]));
  }
  return d / s;
}

class GpuHf : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(GpuHf, FixtureMatchesCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu;
  ASSERT_EQ(drl_device_open(&cpu, DRL_BACKEND_CPU, 0), DRL_OK);
  const std::string dir = source_dir() + "/tests/fixtures/hf/" + GetParam();
  drl_hf_source src;
  int found = 0;
  ASSERT_EQ(drl_hf_source_open(dir.c_str(), &src, &found), DRL_OK) << drl_last_error();
  const int B = 4, T = 40;
  drl_transformer mc, mg;
  ASSERT_EQ(drl_transformer_create(&mc, &src.cfg.model, &cpu, B, T, 1), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_transformer_create(&mg, &src.cfg.model, &gpu, B, T, 1), DRL_OK) << drl_last_error();
  const int64_t n = mc.ps.layout.total;
  ASSERT_EQ(drl_hf_read_weights(dir.c_str(), &mc.ps.layout, src.cfg.model.tied_embeddings, mc.ps.params), DRL_OK)
      << drl_last_error();
  ASSERT_EQ(drl_copy_to_device(&gpu, mg.ps.params, mc.ps.params, (size_t)n * 4), DRL_OK);

  std::mt19937 rng(3);
  const int V = src.cfg.model.vocab;
  std::vector<int32_t> tokens(B * T), targets(B * T), row_start(B);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = (int32_t)(rng() % V);
    targets[i] = i % 3 == 0 ? -1 : (int32_t)(rng() % V);
  }
  for (int b = 0; b < B; ++b) row_start[b] = 3 * b;
  std::vector<float> lpc(B * T), lpg(B * T), ec(B * T), eg(B * T), dlp(B * T);
  for (int i = 0; i < B * T; ++i) dlp[i] = targets[i] >= 0 ? 1.0f : 0.0f;
  ASSERT_EQ(drl_transformer_forward(&mc, tokens.data(), targets.data(), row_start.data(), B, T, 1.0f, lpc.data(),
                                    ec.data()), DRL_OK);
  ASSERT_EQ(drl_transformer_forward(&mg, tokens.data(), targets.data(), row_start.data(), B, T, 1.0f, lpg.data(),
                                    eg.data()), DRL_OK) << drl_last_error();
  EXPECT_LT(rel_err(lpg.data(), lpc.data(), B * T), 1e-4) << GetParam() << ": log-probs";
  EXPECT_LT(rel_err(eg.data(), ec.data(), B * T), 1e-4) << GetParam() << ": entropies";
  ASSERT_EQ(drl_params_zero_grads(&mc.ps), DRL_OK);
  ASSERT_EQ(drl_params_zero_grads(&mg.ps), DRL_OK);
  ASSERT_EQ(drl_transformer_backward(&mc, dlp.data()), DRL_OK);
  ASSERT_EQ(drl_transformer_backward(&mg, dlp.data()), DRL_OK) << drl_last_error();
  std::vector<float> host((size_t)n);
  ASSERT_EQ(drl_copy_to_host(&gpu, host.data(), mg.ps.grads, (size_t)n * 4), DRL_OK);
  for (int t = 0; t < mc.ps.layout.count; ++t) {
    const drl_tensor_info &ti = mc.ps.layout.tensors[t];
    EXPECT_LT(rel_err(host.data() + ti.offset, mc.ps.grads + ti.offset, ti.shape[0] * ti.shape[1]), 1e-3)
        << GetParam() << ": gradient of " << ti.name;
  }
  drl_transformer_free(&mc);
  drl_transformer_free(&mg);
  drl_hf_source_free(&src);
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK);
  drl_device_close(&gpu);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuHf, ::testing::Values("llama", "qwen2", "qwen3"),
                         [](const ::testing::TestParamInfo<std::string> &i) { return i.param; });
