// What the GPU does where the CPU reports an error (it cannot without a sync): a bad token is NaN in the embedding
// forward and skipped in its backward; argument errors are reported before any launch; a bad expert id in the MoE
// dispatch is reported after the sort, which synchronises anyway. The op table (test_gpu_ops) covers the rest.
#include <cmath>
#include <random>
#include <vector>

#include "../test_util.h"
#include "gpu_skip.h"

extern "C" {
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/moe.h"
#include "kernels/rope.h"
}

TEST(GpuErrors, EmbeddingBadTokenIsNaNForwardAndSkippedBackward) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  const int N = 300, C = 40, V = 16; // a few chunks, so the bad positions shift the chunk boundaries
  std::mt19937 g(15);
  std::vector<int32_t> tok(N);
  for (auto &t : tok) t = (int32_t)(g() % V);
  tok[5] = V;
  tok[40] = -3;
  auto table = random_uniform((size_t)V * C, 16), dout = random_uniform((size_t)N * C, 17),
       dt0 = random_uniform((size_t)V * C, 18);
  DevBuf dtok(&gpu, tok), dtab(&gpu, table), ddo(&gpu, dout), dres(&gpu, (size_t)N * C * 4), ddt(&gpu, dt0),
      dscr(&gpu, (size_t)drl_embedding_scratch_bytes(&gpu, N, C));
  ASSERT_EQ(drl_embedding_forward(&gpu, dres.f(), dtok.i(), dtab.f(), N, C, V), DRL_OK) << drl_last_error();
  auto out = dres.get();
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      float v = out[(size_t)n * C + c];
      if (n == 5 || n == 40)
        ASSERT_TRUE(std::isnan(v)) << n;
      else
        ASSERT_EQ(v, table[(size_t)tok[n] * C + c]) << n;
    }
  ASSERT_EQ(drl_embedding_backward(&gpu, ddt.f(), ddo.f(), dtok.i(), N, C, V, dscr.p), DRL_OK) << drl_last_error();
  std::vector<int32_t> good;
  std::vector<float> good_dout;
  for (int n = 0; n < N; ++n)
    if (n != 5 && n != 40) {
      good.push_back(tok[n]);
      good_dout.insert(good_dout.end(), dout.begin() + (size_t)n * C, dout.begin() + (size_t)(n + 1) * C);
    }
  auto dt = dt0;
  drl_device cpu = cpu_device();
  std::vector<char> scratch((size_t)drl_embedding_scratch_bytes(&cpu, (int)good.size(), C));
  ASSERT_EQ(
      drl_embedding_backward_cpu(dt.data(), good_dout.data(), good.data(), (int)good.size(), C, V, scratch.data()),
      DRL_OK);
  EXPECT_SAME_BITS(ddt.get(), dt, "backward without the bad positions");
  drl_device_close(&gpu);
}

TEST(GpuErrors, AttentionAndRopeArgumentsAreCheckedBeforeAnyLaunch) {
  drl_device dev;
  DRL_REQUIRE_GPU(dev);
  float dummy = 0.0f;
  EXPECT_EQ(drl_attention_forward(&dev, &dummy, &dummy, &dummy, &dummy, &dummy, nullptr, 1, 4, 6, 4, 8, &dummy),
            DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_attention_forward(&dev, &dummy, &dummy, &dummy, &dummy, &dummy, nullptr, 1, 4, 4, 2, 8, nullptr),
            DRL_ERR_INVALID_ARG)
      << "the CUDA forward needs scratch";
  EXPECT_EQ(drl_rope_forward(&dev, &dummy, nullptr, &dummy, &dummy, 1, 1, 5), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_device_sync(&dev), DRL_OK) << drl_last_error();
  drl_device_close(&dev);
}

TEST(GpuErrors, MoeDispatchReportsABadExpertAfterTheSort) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  std::vector<int32_t> sel = {0, 3, 1, 7, 2, 2};
  DevBuf dsel(&gpu, sel), dorder(&gpu, 24), dslot(&gpu, 24),
      scratch(&gpu, (size_t)drl_moe_dispatch_scratch_bytes(&gpu, 3, 2, 4));
  std::vector<int64_t> off(5);
  EXPECT_EQ(drl_moe_dispatch(&gpu, dorder.i(), dslot.i(), off.data(), dsel.i(), 3, 2, 4, scratch.p),
            DRL_ERR_INVALID_ARG);
  drl_device_close(&gpu);
}
