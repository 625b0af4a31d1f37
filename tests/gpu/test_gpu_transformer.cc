// The whole transformer on the GPU against the CPU: same init, forward log-probs and entropies, every gradient
// tensor, and the parameters after a few AdamW steps.
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu_skip.h"
#include "../test_util.h"
#include "../transformer_arch.h"

extern "C" {
#include "models/transformer.h"
}

namespace {


// max |a - b| / max |b| over a tensor
double rel_err(const float *a, const float *b, int64_t n) {
  double diff = 0, scale = 1e-12;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::fmax(diff, std::fabs((double)a[i] - b[i]));
    scale = std::fmax(scale, std::fabs((double)b[i]));
  }
  return diff / scale;
}

// The model of c on the CPU and on the GPU from the same parameters: forward log-probs and entropies of a padded
// batch (targets below vocab_used), every gradient tensor, and three AdamW steps. The steps start from the CPU's
// gradients on both devices: AdamW's first steps move a parameter by about lr whatever its gradient's size, so a
// near-zero gradient whose sign differs between cuBLAS and OpenBLAS would flip it by 2 lr; the norm and the update
// are exact ops (tests/ops), so the parameters must stay bit-identical. redraw: 0 keeps the seeded init (which must
// already agree), else the vector tensors are redrawn from it (transformer_arch.h) and copied to the GPU.
void expect_gpu_matches_cpu(const drl_device *gpu, const drl_transformer_config &c, uint32_t seed, uint32_t redraw) {
  drl_device cpu;
  ASSERT_EQ(drl_device_open(&cpu, DRL_BACKEND_CPU, 0), DRL_OK);
  const int B = 8, T = 48, Vu = drl_transformer_vocab_used(&c);
  drl_transformer mc, mg;
  ASSERT_EQ(drl_transformer_create(&mc, &c, &cpu, B, T, seed), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_transformer_create(&mg, &c, gpu, B, T, seed), DRL_OK) << drl_last_error();
  const int64_t n = mc.ps.layout.total;
  std::vector<float> host(n);
  ASSERT_EQ(drl_copy_to_host(gpu, host.data(), mg.ps.params, n * 4), DRL_OK);
  EXPECT_EQ(0, memcmp(host.data(), mc.ps.params, n * 4)) << "the same Philox init on both devices";
  if (redraw) {
    randomize_vectors(mc.ps.layout, mc.ps.params, redraw);
    ASSERT_EQ(drl_copy_to_device(gpu, mg.ps.params, mc.ps.params, n * 4), DRL_OK);
  }
  std::mt19937 rng(seed);
  std::vector<int32_t> tokens(B * T), targets(B * T), row_start(B);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = (int32_t)(rng() % c.vocab);  // padding ids are valid inputs
    targets[i] = (rng() % 5 == 0) ? -1 : (int32_t)(rng() % Vu);
  }
  for (int b = 0; b < B; ++b) row_start[b] = (b * 5) % 17;
  std::vector<float> lpc(B * T), lpg(B * T), ec(B * T), eg(B * T), dlp(B * T);
  for (int i = 0; i < B * T; ++i) dlp[i] = targets[i] >= 0 ? -1.0f / (B * T) : 0.0f;
  for (int step = 1; step <= 3; ++step) {
    ASSERT_EQ(drl_transformer_forward(&mc, tokens.data(), targets.data(), row_start.data(), B, T, 0.8f, lpc.data(),
                                      ec.data()),
              DRL_OK);
    ASSERT_EQ(drl_transformer_forward(&mg, tokens.data(), targets.data(), row_start.data(), B, T, 0.8f, lpg.data(),
                                      eg.data()),
              DRL_OK)
        << drl_last_error();
    EXPECT_LT(rel_err(lpg.data(), lpc.data(), B * T), 1e-4) << "log-probs, step " << step;
    EXPECT_LT(rel_err(eg.data(), ec.data(), B * T), 1e-4) << "entropies, step " << step;
    ASSERT_EQ(drl_params_zero_grads(&mc.ps), DRL_OK);
    ASSERT_EQ(drl_params_zero_grads(&mg.ps), DRL_OK);
    ASSERT_EQ(drl_transformer_backward(&mc, dlp.data()), DRL_OK);
    ASSERT_EQ(drl_transformer_backward(&mg, dlp.data()), DRL_OK) << drl_last_error();
    ASSERT_EQ(drl_copy_to_host(gpu, host.data(), mg.ps.grads, n * 4), DRL_OK);
    for (int t = 0; t < mc.ps.layout.count; ++t) {
      const drl_tensor_info &ti = mc.ps.layout.tensors[t];
      EXPECT_LT(rel_err(host.data() + ti.offset, mc.ps.grads + ti.offset, ti.shape[0] * ti.shape[1]), 1e-3)
          << "gradient of " << ti.name << ", step " << step;
    }
    ASSERT_EQ(drl_copy_to_device(gpu, mg.ps.grads, mc.ps.grads, n * 4), DRL_OK);
    drl_optim_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, step};
    float nc = 0, ng = 0;
    ASSERT_EQ(optim_step(&mc.ps, hp, &nc), DRL_OK);
    ASSERT_EQ(optim_step(&mg.ps, hp, &ng), DRL_OK) << drl_last_error();
    EXPECT_EQ(ng, nc) << "gradient norm, step " << step;
    ASSERT_EQ(drl_copy_to_host(gpu, host.data(), mg.ps.params, n * 4), DRL_OK);
    EXPECT_EQ(0, memcmp(host.data(), mc.ps.params, n * 4)) << "parameters after step " << step;
  }
  drl_transformer_free(&mc);
  drl_transformer_free(&mg);
  ASSERT_EQ(drl_device_sync(gpu), DRL_OK);
}

}  // namespace

TEST(GpuTransformer, MatchesCpuForwardBackwardAndSteps) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  expect_gpu_matches_cpu(&gpu, gpu_model_config(), 42, 0);
  drl_device_close(&gpu);
}

// An MoE policy (every block 8 experts, top 2, a shared expert) on the GPU against the CPU. The routing must agree:
// cuBLAS and OpenBLAS round the router's GEMM differently, so a token at a near-tie may choose another expert; the
// test demands agreement on nearly every token and compares the gradients when every token agrees.
TEST(GpuTransformer, MoePolicyMatchesCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu;
  ASSERT_EQ(drl_device_open(&cpu, DRL_BACKEND_CPU, 0), DRL_OK);
  drl_transformer_config c = gpu_model_config();
  c.moe = {8, 2, 128, 64, 0, 1, 1.0f};
  const int B = 8, T = 48;
  drl_transformer mc, mg;
  ASSERT_EQ(drl_transformer_create(&mc, &c, &cpu, B, T, 43), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_transformer_create(&mg, &c, &gpu, B, T, 43), DRL_OK) << drl_last_error();
  std::vector<float> bias(c.n_layers * 8);
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = 0.01f * (float)((i * 7) % 5) - 0.02f;
  ASSERT_EQ(drl_transformer_moe_set_bias(&mc, bias.data()), DRL_OK);
  ASSERT_EQ(drl_transformer_moe_set_bias(&mg, bias.data()), DRL_OK);
  std::mt19937 rng(9);
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = (int32_t)(rng() % c.vocab);
    targets[i] = (int32_t)(rng() % c.vocab);
  }
  std::vector<float> lpc(B * T), lpg(B * T), dlp(B * T, -1.0f / (B * T));
  ASSERT_EQ(drl_transformer_forward(&mc, tokens.data(), targets.data(), nullptr, B, T, 1.0f, lpc.data(), nullptr),
            DRL_OK);
  ASSERT_EQ(drl_transformer_forward(&mg, tokens.data(), targets.data(), nullptr, B, T, 1.0f, lpg.data(), nullptr),
            DRL_OK)
      << drl_last_error();
  int64_t differ = 0, total = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    int64_t n = (int64_t)B * T * 2;
    std::vector<int32_t> sg(n);
    ASSERT_EQ(drl_copy_to_host(&gpu, sg.data(), mg.acts.moe[l].sel, n * sizeof(int32_t)), DRL_OK);
    for (int64_t i = 0; i < n; ++i) differ += sg[i] != mc.acts.moe[l].sel[i];
    total += n;
  }
  EXPECT_LE(differ, total / 100) << differ << " of " << total << " routes differ";
  EXPECT_LT(rel_err(lpg.data(), lpc.data(), B * T), differ ? 1e-2 : 1e-4);
  ASSERT_EQ(drl_params_zero_grads(&mc.ps), DRL_OK);
  ASSERT_EQ(drl_params_zero_grads(&mg.ps), DRL_OK);
  ASSERT_EQ(drl_transformer_backward(&mc, dlp.data()), DRL_OK);
  ASSERT_EQ(drl_transformer_backward(&mg, dlp.data()), DRL_OK) << drl_last_error();
  if (differ == 0) {
    const int64_t n = mc.ps.layout.total;
    std::vector<float> host(n);
    ASSERT_EQ(drl_copy_to_host(&gpu, host.data(), mg.ps.grads, n * 4), DRL_OK);
    for (int t = 0; t < mc.ps.layout.count; ++t) {
      const drl_tensor_info &ti = mc.ps.layout.tensors[t];
      EXPECT_LT(rel_err(host.data() + ti.offset, mc.ps.grads + ti.offset, ti.shape[0] * ti.shape[1]), 1e-3)
          << "gradient of " << ti.name;
    }
  }
  drl_transformer_free(&mc);
  drl_transformer_free(&mg);
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK);
  drl_device_close(&gpu);
}

// The pretrained-architecture features (heads of 24 over d_model 128, q/k/v biases, q/k norms, ids 45..49 padding the
// vocabulary, llama3 RoPE scaling, an untied head), biases and norm gains redrawn.
TEST(GpuTransformer, PretrainedArchitectureMatchesCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_transformer_config c = gpu_model_config();
  c.tied_embeddings = 0;
  enable_all_features(&c, 24, 45);
  expect_gpu_matches_cpu(&gpu, c, 44, 45);
  drl_device_close(&gpu);
}
