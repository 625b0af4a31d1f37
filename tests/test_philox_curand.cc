// Our Philox reproduces the raw 32-bit stream of cuRAND's host generator, which runs without a GPU.
// Its documented-by-observation order: out[n] = philox(ctr = (n / (4 * 65536), 0, (n / 4) % 65536, 0), key = seed)[n % 4].
#include <curand.h>
#include <gtest/gtest.h>

#include <vector>

extern "C" {
#include "kernels/philox.h"
}

TEST(PhiloxCurand, RawStreamEqualsHostGenerator) {
  const unsigned long long seeds[] = {0ull, 1ull, 1234ull, 0xdeadbeefcafef00dull};
  const size_t lengths[] = {4, 1001, 262144 * 2 + 12};
  for (unsigned long long seed : seeds) {
    for (size_t n : lengths) {
      curandGenerator_t gen;
      curandStatus_t st = curandCreateGeneratorHost(&gen, CURAND_RNG_PSEUDO_PHILOX4_32_10);
      ASSERT_EQ(st, CURAND_STATUS_SUCCESS) << "curandCreateGeneratorHost failed with status " << st;
      ASSERT_EQ(curandSetPseudoRandomGeneratorSeed(gen, seed), CURAND_STATUS_SUCCESS);
      std::vector<unsigned int> ref(n);
      ASSERT_EQ(curandGenerate(gen, ref.data(), n), CURAND_STATUS_SUCCESS);
      curandDestroyGenerator(gen);
      const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
      size_t mismatches = 0;
      for (size_t i = 0; i < n; ++i) {
        const uint32_t ctr[4] = {(uint32_t)(i / (4 * 65536)), 0, (uint32_t)((i / 4) % 65536), 0};
        if (drl_philox4x32_10(ctr, key).v[i % 4] != ref[i]) ++mismatches;
      }
      EXPECT_EQ(mismatches, 0u) << "seed " << seed << " length " << n;
    }
  }
}

// The same words through our addressed-stream API: element e of (seed, step = t, tag = 0) is thread t's word e.
TEST(PhiloxCurand, AddressedStreamEqualsGeneratorSubsequence) {
  curandGenerator_t gen;
  ASSERT_EQ(curandCreateGeneratorHost(&gen, CURAND_RNG_PSEUDO_PHILOX4_32_10), CURAND_STATUS_SUCCESS);
  ASSERT_EQ(curandSetPseudoRandomGeneratorSeed(gen, 42), CURAND_STATUS_SUCCESS);
  const size_t n = 4 * 65536 * 3;  // three words-blocks per virtual thread
  std::vector<unsigned int> ref(n);
  ASSERT_EQ(curandGenerate(gen, ref.data(), n), CURAND_STATUS_SUCCESS);
  curandDestroyGenerator(gen);
  for (uint32_t t : {0u, 1u, 777u, 65535u}) {
    for (uint64_t e = 0; e < 12; ++e) {
      size_t idx = (size_t)(e / 4) * 4 * 65536 + (size_t)t * 4 + e % 4;
      EXPECT_EQ(drl_rng_u32(42, t, 0, e), ref[idx]) << "thread " << t << " element " << e;
    }
  }
}
