// rank_sum and SPSA on the GPU give the same bits as their CPU twins (which the unit tests check against naive
// references): bit-identical by construction, every add and multiply rounded once in the shared math of the headers.
#include <cstring>
#include <random>
#include <vector>

#include "gpu_skip.h"
#include "../test_util.h"

extern "C" {
#include "kernels/rank_sum.h"
#include "kernels/spsa.h"
}

namespace {

std::vector<drl_spsa_contrib> contribs(int count, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<uint32_t> q(0, DRL_SPSA_MAX_Q - 1);
  std::uniform_real_distribution<float> coef(-1.0f, 1.0f);
  std::vector<drl_spsa_contrib> cs(count);
  for (auto &c : cs) c = {q(g), coef(g)};
  return cs;
}

}  // namespace

TEST(GpuRankSum, BitIdenticalToCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  const int64_t n = 1000003;
  for (int count : {1, 3, 8, 13}) {
    auto in = random_normal((size_t)count * n, 100.0f, 20 + count);
    DevBuf din(&gpu, in), dout(&gpu, n * sizeof(float));
    std::vector<float> cpu(n);
    ASSERT_EQ(drl_rank_sum_cpu(cpu.data(), in.data(), count, n), DRL_OK);
    ASSERT_EQ(drl_rank_sum(&gpu, dout.f(), din.f(), count, n), DRL_OK) << drl_last_error();
    EXPECT_SAME_BITS(dout.get(), cpu, "rank_sum count " << count);
    // In place, into piece 0.
    ASSERT_EQ(drl_rank_sum(&gpu, din.f(), din.f(), count, n), DRL_OK) << drl_last_error();
    auto back = din.get();
    EXPECT_SAME_BITS(std::vector<float>(back.begin(), back.begin() + n), cpu, "in-place rank_sum count " << count);
  }
  drl_device_close(&gpu);
}

TEST(GpuSpsa, PerturbBitIdenticalToCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  const int64_t n = 1000003;
  auto theta = random_uniform(n, 31);
  DevBuf dtheta(&gpu, theta), dout(&gpu, n * sizeof(float));
  for (drl_spsa_dist dist : {DRL_SPSA_RADEMACHER, DRL_SPSA_NORMAL})
    for (uint64_t offset : {0ull, 5ull, (1ull << 33) + 3}) {
      drl_spsa_stream s = {0x0123456789abcdefull, 17, dist};
      const uint32_t q = (1234u << 12) | 567u;
      std::vector<float> cpu(n);
      ASSERT_EQ(drl_spsa_perturb_cpu(cpu.data(), theta.data(), n, offset, s, q, 1e-3f), DRL_OK);
      ASSERT_EQ(drl_spsa_perturb(&gpu, dout.f(), dtheta.f(), n, offset, s, q, 1e-3f), DRL_OK) << drl_last_error();
      EXPECT_SAME_BITS(dout.get(), cpu, "perturb dist " << dist << " offset " << offset);
    }
  EXPECT_SAME_BITS(dtheta.get(), theta, "theta must only be read");
  drl_device_close(&gpu);
}

TEST(GpuSpsa, ApplyBitIdenticalToCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  const int64_t n = (1 << 18) + 3;
  const uint64_t offset = 7;  // odd: the first and last Philox blocks are partial
  for (drl_spsa_dist dist : {DRL_SPSA_RADEMACHER, DRL_SPSA_NORMAL})
    for (int count : {1, 300}) {  // 300 crosses a launch batch
      drl_spsa_stream s = {99, 4, dist};
      auto cs = contribs(count, 40 + count);
      const auto theta = random_uniform(n, 32);
      DevBuf dtheta(&gpu, theta);  // the upload is stream-ordered: theta stays untouched
      auto cpu = theta;
      ASSERT_EQ(drl_spsa_apply_cpu(cpu.data(), n, offset, s, cs.data(), count), DRL_OK);
      ASSERT_EQ(drl_spsa_apply(&gpu, dtheta.f(), n, offset, s, cs.data(), count), DRL_OK) << drl_last_error();
      EXPECT_SAME_BITS(dtheta.get(), cpu, "apply dist " << dist << " count " << count);
    }
  drl_device_close(&gpu);
}
