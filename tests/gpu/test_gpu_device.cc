// The CUDA device: allocation, copies, memset, stream sync, describe, and errors for bad requests.
#include <string>
#include <vector>

#include "gpu_skip.h"

TEST(GpuDevice, AllocCopyMemsetRoundTrip) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  char name[256];
  drl_device_describe(&gpu, name, sizeof name);
  EXPECT_EQ(std::string(name).rfind("cuda:0", 0), 0u) << name;
  const size_t n = 1 << 20;
  float *a = nullptr, *b = nullptr;
  ASSERT_EQ(drl_alloc(&gpu, (void **)&a, n * 4, "a"), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_alloc(&gpu, (void **)&b, n * 4, "b"), DRL_OK) << drl_last_error();
  std::vector<float> host(n), back(n, -1.0f);
  ASSERT_EQ(drl_copy_to_host(&gpu, back.data(), a, n * 4), DRL_OK);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(back[i], 0.0f) << "drl_alloc zero-fills at " << i;
  for (size_t i = 0; i < n; ++i) host[i] = (float)i * 0.5f;
  ASSERT_EQ(drl_copy_to_device(&gpu, a, host.data(), n * 4), DRL_OK);
  ASSERT_EQ(drl_copy_on_device(&gpu, b, a, n * 4), DRL_OK);
  ASSERT_EQ(drl_memset(&gpu, b, 0, 16 * 4), DRL_OK);
  ASSERT_EQ(drl_copy_to_host(&gpu, back.data(), b, n * 4), DRL_OK);
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(back[i], 0.0f);
  for (size_t i = 16; i < n; ++i) ASSERT_EQ(back[i], host[i]);
  drl_free(&gpu, a);
  drl_free(&gpu, b);
  EXPECT_EQ(drl_device_sync(&gpu), DRL_OK) << drl_last_error();
  drl_device_close(&gpu);
}

TEST(GpuDevice, BadRequestsAreClearErrors) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device other;
  EXPECT_EQ(drl_device_open(&other, DRL_BACKEND_CUDA, 4096), DRL_ERR_NO_DEVICE);
  EXPECT_NE(std::string(drl_last_error()).find("4096"), std::string::npos) << drl_last_error();
  void *p = nullptr;
  EXPECT_EQ(drl_alloc(&gpu, &p, (size_t)1 << 50, "a petabyte"), DRL_ERR_OOM);
  EXPECT_NE(std::string(drl_last_error()).find("a petabyte"), std::string::npos) << drl_last_error();
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(drl_device_sync(&gpu), DRL_OK) << "a failed allocation must not poison the stream: " << drl_last_error();
  drl_device_close(&gpu);
}
