// The CPU device, and a GPU request on a machine without one: a clear error, never a crash.
#include <gtest/gtest.h>

#include <string>
#include <vector>

extern "C" {
#include "kernels/device.h"
}

TEST(Device, CpuAllocCopyMemset) {
  drl_device dev;
  ASSERT_EQ(drl_device_open(&dev, DRL_BACKEND_CPU, 0), DRL_OK);
  char name[64];
  drl_device_describe(&dev, name, sizeof name);
  EXPECT_STREQ(name, "cpu");
  float *buf = nullptr;
  ASSERT_EQ(drl_alloc(&dev, (void **)&buf, 1000 * sizeof(float), "test buffer"), DRL_OK);
  ASSERT_NE(buf, nullptr);
  EXPECT_EQ((uintptr_t)buf % 64, 0u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(buf[i], 0.0f) << "drl_alloc zero-fills";
  std::vector<float> host(1000);
  for (int i = 0; i < 1000; ++i) host[i] = (float)i;
  ASSERT_EQ(drl_copy_to_device(&dev, buf, host.data(), 1000 * sizeof(float)), DRL_OK);
  ASSERT_EQ(drl_copy_on_device(&dev, buf, buf + 500, 500 * sizeof(float)), DRL_OK);
  ASSERT_EQ(drl_memset(&dev, buf + 900, 0, 100 * sizeof(float)), DRL_OK);
  std::vector<float> back(1000, -1.0f);
  ASSERT_EQ(drl_copy_to_host(&dev, back.data(), buf, 1000 * sizeof(float)), DRL_OK);
  ASSERT_EQ(drl_device_sync(&dev), DRL_OK);
  for (int i = 0; i < 500; ++i) EXPECT_EQ(back[i], (float)(i + 500));
  for (int i = 500; i < 900; ++i) EXPECT_EQ(back[i], (float)i);
  for (int i = 900; i < 1000; ++i) EXPECT_EQ(back[i], 0.0f);
  drl_free(&dev, buf);
  drl_free(&dev, nullptr);
  drl_device_close(&dev);
}

TEST(Device, OverlappingCopyIsRefusedOnEveryBackend) {
  // cudaMemcpyAsync is undefined on overlap, so the CPU twin must refuse it too (it used to memmove).
  drl_device dev;
  ASSERT_EQ(drl_device_open(&dev, DRL_BACKEND_CPU, 0), DRL_OK);
  float *buf = nullptr;
  ASSERT_EQ(drl_alloc(&dev, (void **)&buf, 100 * sizeof(float), "test buffer"), DRL_OK);
  for (int i = 0; i < 100; ++i) buf[i] = (float)i;
  EXPECT_EQ(drl_copy_on_device(&dev, buf + 1, buf, 50 * sizeof(float)), DRL_ERR_INVALID_ARG);
  EXPECT_NE(std::string(drl_last_error()).find("overlap"), std::string::npos) << drl_last_error();
  EXPECT_EQ(drl_copy_on_device(&dev, buf, buf + 49, 50 * sizeof(float)), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_copy_on_device(&dev, buf, buf, 4), DRL_OK) << "a copy onto itself does nothing";
  for (int i = 0; i < 100; ++i) EXPECT_EQ(buf[i], (float)i) << "a refused copy writes nothing";
  EXPECT_EQ(drl_copy_on_device(&dev, buf, buf + 50, 50 * sizeof(float)), DRL_OK) << "adjacent ranges are fine";
  EXPECT_EQ(drl_copy_on_device(&dev, buf, buf, 0), DRL_OK) << "nothing to copy";
  EXPECT_EQ(buf[0], 50.0f);
  drl_free(&dev, buf);
  drl_device_close(&dev);
}

TEST(Device, HostOutOfMemoryNamesTheBuffer) {
  drl_device dev;
  ASSERT_EQ(drl_device_open(&dev, DRL_BACKEND_CPU, 0), DRL_OK);
  void *p = (void *)1;
  EXPECT_EQ(drl_alloc(&dev, &p, SIZE_MAX - 8, "giant activations"), DRL_ERR_OOM);
  EXPECT_EQ(p, nullptr);
  EXPECT_NE(std::string(drl_last_error()).find("giant activations"), std::string::npos) << drl_last_error();
}

TEST(Device, GpuRequestWithoutGpuIsAClearError) {
  drl_device dev;
  drl_status st = drl_device_open(&dev, DRL_BACKEND_CUDA, 0);
  if (drl_cuda_device_count() > 0) {
    EXPECT_EQ(st, DRL_OK) << drl_last_error();
    drl_device_close(&dev);
    return;
  }
  std::string msg = drl_last_error();
#ifdef DRL_HAVE_CUDA
  EXPECT_EQ(st, DRL_ERR_NO_DEVICE);
  EXPECT_NE(msg.find("no GPU is visible"), std::string::npos) << msg;
#else
  EXPECT_EQ(st, DRL_ERR_UNSUPPORTED);
  EXPECT_NE(msg.find("built without CUDA"), std::string::npos) << msg;
#endif
  EXPECT_EQ(drl_device_open(&dev, (drl_backend)7, 0), DRL_ERR_INVALID_ARG);
}
