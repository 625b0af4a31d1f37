// rng_fill on the GPU produces the same bits as on the CPU, for every distribution, length and offset.
#include <cstring>
#include <vector>

#include "gpu_skip.h"

extern "C" {
#include "kernels/rng_fill.h"
}

TEST(GpuRng, SameBitsAsCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  const uint64_t n = 10000019;  // odd, past 2^23
  void *d = nullptr;
  ASSERT_EQ(drl_alloc(&gpu, &d, n * 4, "rng output"), DRL_OK) << drl_last_error();
  std::vector<uint32_t> cpu(n), back(n);
  drl_rng_stream streams[] = {{0, 0, 0}, {0x123456789abcdefull, 77, drl_rng_tag(DRL_RNG_SPSA, 3, 9)}};
  uint64_t offsets[] = {0, 3, (1ull << 33) + 1};
  for (drl_rng_stream s : streams) {
    for (uint64_t off : offsets) {
      for (drl_rng_dist dist : {DRL_DIST_U32, DRL_DIST_UNIFORM, DRL_DIST_RADEMACHER, DRL_DIST_NORMAL}) {
        ASSERT_EQ(drl_rng_fill_cpu(cpu.data(), n, s, off, dist), DRL_OK);
        ASSERT_EQ(drl_rng_fill(&gpu, d, n, s, off, dist), DRL_OK) << drl_last_error();
        ASSERT_EQ(drl_copy_to_host(&gpu, back.data(), d, n * 4), DRL_OK) << drl_last_error();
        size_t first_diff = n;
        for (size_t i = 0; i < n && first_diff == n; ++i)
          if (cpu[i] != back[i]) first_diff = i;
        EXPECT_EQ(first_diff, n) << "dist " << dist << " offset " << off << ": first differing element "
                                 << first_diff;
      }
    }
  }
  drl_free(&gpu, d);
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK);
  drl_device_close(&gpu);
}
