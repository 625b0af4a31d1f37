// Every gpu-labelled test starts with DRL_REQUIRE_GPU(dev): it skips, visibly, when no CUDA device is usable.
#pragma once
#include <gtest/gtest.h>

extern "C" {
#include "kernels/device.h"
}

#define DRL_REQUIRE_GPU(dev)                                                              \
  do {                                                                                    \
    if (drl_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible on this machine"; \
    ASSERT_EQ(drl_device_open(&(dev), DRL_BACKEND_CUDA, 0), DRL_OK) << drl_last_error(); \
  } while (0)
