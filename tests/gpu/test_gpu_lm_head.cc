// The LM head, AdamW and sum_squares on the GPU against the CPU backend.
// Tolerances: the LM head's logits come from cuBLAS vs OpenBLAS (FP32, no TF32), which differ in the last bits, and
// the row math uses CUDA's expf/logf vs glibc's: log-prob and entropy agree to 1e-5 (1 + |value|), gradients to 1e-4 of
// their largest magnitude. AdamW and sum_squares use explicitly rounded arithmetic in a fixed layout: the same bits.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gpu_skip.h"
#include "../test_util.h"

extern "C" {
#include "kernels/adamw.h"
#include "kernels/lm_head.h"
#include "kernels/reduce.h"
}

namespace {

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// max |a - b| / max |b|
double rel_max_err(const std::vector<float> &a, const std::vector<float> &b) {
  double err = 0.0, mag = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, (double)std::fabs(a[i] - b[i]));
    mag = std::max(mag, (double)std::fabs(b[i]));
  }
  return mag > 0 ? err / mag : err;
}

void lm_head_case(drl_device &gpu, int N, int C, int V, float T) {
  SCOPED_TRACE(::testing::Message() << "N=" << N << " C=" << C << " V=" << V << " T=" << T);
  drl_device cpu;
  ASSERT_EQ(drl_device_open(&cpu, DRL_BACKEND_CPU, 0), DRL_OK);
  std::vector<float> x = random_normal((size_t)N * C, 1.0f, 1),
                     W = random_normal((size_t)V * C, 2.0f / std::sqrt((float)C), 2);
  std::vector<int32_t> targets(N);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> td(0, V - 1);
  for (int n = 0; n < N; ++n) targets[n] = n % 7 == 2 ? -1 : td(rng);
  std::vector<float> dlp = random_normal(N, 1.0f, 4), dW0 = random_normal((size_t)V * C, 0.01f, 5);

  // CPU reference.
  const int cpu_chunk = 256, gpu_chunk = 512;
  std::vector<float> scratch(drl_lm_head_scratch_floats(&cpu, cpu_chunk, V));
  std::vector<float> lp(N), ent(N), dx((size_t)N * C), dW = dW0;
  ASSERT_EQ(drl_lm_head_forward(&cpu, lp.data(), ent.data(), x.data(), W.data(), targets.data(), N, C, V, T,
                                scratch.data(), cpu_chunk),
            DRL_OK)
      << drl_last_error();
  ASSERT_EQ(drl_lm_head_backward(&cpu, dx.data(), dW.data(), dlp.data(), x.data(), W.data(), targets.data(), N, C, V,
                                 T, scratch.data(), cpu_chunk),
            DRL_OK)
      << drl_last_error();

  DevBuf x_d(&gpu, x), w_d(&gpu, W), dlp_d(&gpu, dlp), gW_d(&gpu, dW0), gx_d(&gpu, (size_t)N * C * sizeof(float));
  DevBuf lp_d(&gpu, (size_t)N * sizeof(float)), ent_d(&gpu, (size_t)N * sizeof(float));
  DevBuf scratch_d(&gpu, (size_t)drl_lm_head_scratch_floats(&gpu, gpu_chunk, V) * sizeof(float));
  DevBuf tg_d(&gpu, targets);
  ASSERT_EQ(drl_lm_head_forward(&gpu, lp_d.f(), ent_d.f(), x_d.f(), w_d.f(), tg_d.i(), N, C, V, T, scratch_d.f(),
                                gpu_chunk),
            DRL_OK)
      << drl_last_error();
  ASSERT_EQ(drl_lm_head_backward(&gpu, gx_d.f(), gW_d.f(), dlp_d.f(), x_d.f(), w_d.f(), tg_d.i(), N, C, V, T,
                                 scratch_d.f(), gpu_chunk),
            DRL_OK)
      << drl_last_error();
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK) << drl_last_error();
  std::vector<float> glp = lp_d.get(), gent = ent_d.get(), gdx = gx_d.get(), gdW = gW_d.get();

  int bad = 0;
  for (int n = 0; n < N && bad < 10; ++n) {
    bool ok = std::fabs(glp[n] - lp[n]) <= 1e-5 * (1.0 + std::fabs(lp[n])) &&
              std::fabs(gent[n] - ent[n]) <= 1e-5 * (1.0 + std::fabs(ent[n])) && (targets[n] >= 0 || glp[n] == 0.0f);
    if (!ok) {
      ADD_FAILURE() << "row " << n << ": logprob gpu " << glp[n] << " cpu " << lp[n] << ", entropy gpu " << gent[n]
                    << " cpu " << ent[n];
      ++bad;
    }
  }
  EXPECT_LT(rel_max_err(gdx, dx), 1e-4);
  EXPECT_LT(rel_max_err(gdW, dW), 1e-4);

  // Deterministic: a second run gives the same bits (no atomics anywhere).
  DevBuf gW2_d(&gpu, dW0), gx2_d(&gpu, (size_t)N * C * sizeof(float)), ent2_d(&gpu, (size_t)N * sizeof(float));
  ASSERT_EQ(drl_lm_head_forward(&gpu, nullptr, ent2_d.f(), x_d.f(), w_d.f(), nullptr, N, C, V, T, scratch_d.f(),
                                gpu_chunk),
            DRL_OK);
  ASSERT_EQ(drl_lm_head_backward(&gpu, gx2_d.f(), gW2_d.f(), dlp_d.f(), x_d.f(), w_d.f(), tg_d.i(), N, C, V, T,
                                 scratch_d.f(), gpu_chunk),
            DRL_OK);
  EXPECT_TRUE(same_bits(ent2_d.get(), gent));
  EXPECT_TRUE(same_bits(gx2_d.get(), gdx));
  EXPECT_TRUE(same_bits(gW2_d.get(), gdW));
}

}  // namespace

TEST(GpuLmHead, MatchesCpuLargeVocab) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  lm_head_case(gpu, 2048, 256, 32000, 1.0f);
  drl_device_close(&gpu);
}

TEST(GpuLmHead, MatchesCpuSmallVocab) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  lm_head_case(gpu, 2048, 256, 13, 0.7f);
  lm_head_case(gpu, 37, 16, 1, 1.0f);
  drl_device_close(&gpu);
}

TEST(GpuAdamW, BitIdenticalToCpu) {
  drl_device gpu, cpu;
  DRL_REQUIRE_GPU(gpu);
  ASSERT_EQ(drl_device_open(&cpu, DRL_BACKEND_CPU, 0), DRL_OK);
  const size_t n = (1u << 20) + 3;
  std::vector<float> p = random_normal(n, 1.0f, 1), m(n, 0.0f), v(n, 0.0f);
  DevBuf p_d(&gpu, p), m_d(&gpu, m), v_d(&gpu, v), g_d(&gpu, n * sizeof(float));
  for (int step = 1; step <= 3; ++step) {
    std::vector<float> g = random_normal(n, 0.1f, 10 + step);
    drl_adamw_hparams hp = {3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, step, step == 2 ? 0.37f : 1.0f};
    ASSERT_EQ(drl_adamw(&cpu, p.data(), g.data(), m.data(), v.data(), (int64_t)n, hp), DRL_OK);
    ASSERT_EQ(drl_copy_to_device(&gpu, g_d.p, g.data(), n * sizeof(float)), DRL_OK);
    ASSERT_EQ(drl_adamw(&gpu, p_d.f(), g_d.f(), m_d.f(), v_d.f(), (int64_t)n, hp), DRL_OK) << drl_last_error();
    ASSERT_EQ(drl_device_sync(&gpu), DRL_OK) << drl_last_error();
    EXPECT_TRUE(same_bits(p_d.get(), p)) << "params after step " << step;
    EXPECT_TRUE(same_bits(m_d.get(), m)) << "m after step " << step;
    EXPECT_TRUE(same_bits(v_d.get(), v)) << "v after step " << step;
  }
  drl_device_close(&gpu);
}

TEST(GpuSumSquares, BitIdenticalToCpu) {
  drl_device gpu, cpu;
  DRL_REQUIRE_GPU(gpu);
  ASSERT_EQ(drl_device_open(&cpu, DRL_BACKEND_CPU, 0), DRL_OK);
  for (int64_t n : {1L, 4095L, 4096L, 4097L, 1000000L, 10000019L}) {
    std::vector<float> x = random_normal((size_t)n, 1.0f, (uint32_t)n);
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> e(-20, 20);  // a wide range, so any difference in order would show
    for (float &v : x) v = std::ldexp(v, e(rng));
    std::vector<char> scratch(drl_reduce_scratch_bytes(&cpu, n));
    double want = -1.0, got = -2.0;
    ASSERT_EQ(drl_sum_squares(&cpu, &want, x.data(), n, scratch.data()), DRL_OK);
    DevBuf x_d(&gpu, x);
    DevBuf s_d(&gpu, (size_t)drl_reduce_scratch_bytes(&gpu, n));
    ASSERT_EQ(drl_sum_squares(&gpu, &got, x_d.f(), n, s_d.p), DRL_OK) << drl_last_error();
    EXPECT_EQ(std::memcmp(&got, &want, sizeof got), 0) << "n " << n << ": gpu " << got << " cpu " << want;
  }
  double zero = -1.0;
  ASSERT_EQ(drl_sum_squares(&gpu, &zero, nullptr, 0, nullptr), DRL_OK);
  EXPECT_EQ(zero, 0.0);
  drl_device_close(&gpu);
}
