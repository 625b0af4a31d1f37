// Carved buffers (models/carve.h): sizes, alignment, and the poisoned guards that make an overrun loud under ASan.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>

extern "C" {
#include "models/carve.h"
}

TEST(Carve, SizesAlignAndTheSecondPassMatchesTheFirst) {
  drl_carve sizing = {nullptr, 0};
  EXPECT_EQ(drl_carve_take(&sizing, 100), nullptr);
  EXPECT_EQ(drl_carve_take(&sizing, 256), nullptr);
  EXPECT_EQ(sizing.used, 512u + 2u * DRL_CARVE_GUARD);
  char *block = (char *)std::aligned_alloc(256, sizing.used);
  ASSERT_NE(block, nullptr);
  drl_carve real = {block, 0};
  char *a = (char *)drl_carve_take(&real, 100), *b = (char *)drl_carve_take(&real, 256);
  EXPECT_EQ(a, block);
  EXPECT_EQ(b, block + 256 + DRL_CARVE_GUARD);
  EXPECT_EQ((uintptr_t)b % 256, 0u);
  EXPECT_EQ(real.used, sizing.used);
  for (int i = 0; i < 100; ++i) a[i] = 1; // every byte of a buffer is usable
  for (int i = 0; i < 256; ++i) b[i] = 2;
  std::free(block);
}

TEST(Carve, WritingPastABufferIsAnAsanError) {
#if !DRL_CARVE_GUARD
  GTEST_SKIP() << "the guards exist under AddressSanitizer only (the asan preset runs this)";
#else
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  drl_carve sizing = {nullptr, 0};
  drl_carve_take(&sizing, 100);
  drl_carve_take(&sizing, 100);
  char *block = (char *)std::aligned_alloc(256, sizing.used);
  ASSERT_NE(block, nullptr);
  drl_carve real = {block, 0};
  volatile char *a = (char *)drl_carve_take(&real, 100);
  drl_carve_take(&real, 100);
  EXPECT_DEATH(a[100] = 1, "use-after-poison") << "the byte after a buffer";
  EXPECT_DEATH(a[300] = 1, "use-after-poison") << "the guard before the next buffer";
  std::free(block);
#endif
}
