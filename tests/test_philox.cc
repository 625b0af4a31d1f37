// Philox4x32-10: known answers, the stream layout, exact transforms, distribution checks, thread independence.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

extern "C" {
#include "kernels/philox.h"
#include "kernels/rng_fill.h"
}

namespace {

drl_philox_block philox(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  const uint32_t ctr[4] = {c0, c1, c2, c3};
  const uint32_t key[2] = {k0, k1};
  return drl_philox4x32_10(ctr, key);
}

void expect_block(drl_philox_block b, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3) {
  EXPECT_EQ(b.v[0], a0);
  EXPECT_EQ(b.v[1], a1);
  EXPECT_EQ(b.v[2], a2);
  EXPECT_EQ(b.v[3], a3);
}

}  // namespace

// Random123 kat_vectors for philox4x32_10.
TEST(Philox, Random123KnownAnswers) {
  expect_block(philox(0, 0, 0, 0, 0, 0), 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u);
  expect_block(philox(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu), 0x408f276du,
               0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu);
  expect_block(philox(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u), 0xd16cfe09u,
               0x94fdccebu, 0x5001e420u, 0x24126ea1u);
}

// Element i of (seed, step, tag) is cuRAND's curand_init(seed, step | tag << 32, i) stream:
// curand_init(1234, 5, 6) yields words 2 and 3 of philox(ctr = (1, 0, 5, 0), key = (1234, 0)).
TEST(Philox, StreamLayoutMatchesCurandInit) {
  EXPECT_EQ(drl_rng_u32(1234, 5, 0, 6), 0x32773955u);
  EXPECT_EQ(drl_rng_u32(1234, 5, 0, 7), 0x72c26332u);
  drl_philox_block b = philox(0x89abcdefu, 0x01234567u, 77, 0xdeadbeefu, 0x9u, 0x1u);
  uint64_t q = 0x0123456789abcdefull;
  EXPECT_EQ(drl_rng_u32(0x100000009ull, 77, 0xdeadbeefu, q * 4 + 3), b.v[3]);
}

TEST(Philox, U64ElementIsTwoConsecutiveWords) {
  for (uint64_t i : {0ull, 1ull, 2ull, 7ull, 1000001ull}) {
    uint64_t want = ((uint64_t)drl_rng_u32(9, 4, 3, 2 * i) << 32) | drl_rng_u32(9, 4, 3, 2 * i + 1);
    EXPECT_EQ(drl_rng_u64(9, 4, 3, i), want) << i;
  }
}

TEST(Philox, TagPacksPurposeUidSample) {
  EXPECT_EQ(drl_rng_tag(DRL_RNG_SPSA, 0, 0), 2u);
  EXPECT_EQ(drl_rng_tag(DRL_RNG_SPSA, 3, 5), 2u | (5u << 4) | (3u << 16));
  EXPECT_EQ(drl_rng_tag(0xF, 0xFFFF, 0xFFF), 0xFFFFFFFFu);
  EXPECT_NE(drl_rng_tag(DRL_RNG_ROLLOUT, 1, 0), drl_rng_tag(DRL_RNG_ROLLOUT, 0, 1));
}

TEST(Philox, UniformTransformsAreExactAndInRange) {
  EXPECT_EQ(drl_u32_to_uniform(0), 0.0f);
  EXPECT_EQ(drl_u32_to_uniform(0xffffffffu), 1.0f - 0x1p-24f);
  EXPECT_EQ(drl_u32_to_uniform(0x80000000u), 0.5f);
  EXPECT_EQ(drl_u32_to_uniform_pos(0), 0x1p-24f);
  EXPECT_EQ(drl_u32_to_uniform_pos(0xffffffffu), 1.0f);
  EXPECT_EQ(drl_u32_to_rademacher(0x80000000u), 1.0f);
  EXPECT_EQ(drl_u32_to_rademacher(0x7fffffffu), -1.0f);
}

// The engine-owned polynomials must be accurate over every input the transforms can produce (2^24 of each).
TEST(Philox, LogPolynomialAccurateOnEveryUniform) {
  double worst = 0;
  for (uint32_t k = 1; k <= (1u << 24); ++k) {
    float u = (float)k * 0x1p-24f;
    double ref = std::log((double)u);
    double got = drl_rng_logf(u);
    double err = std::fabs(got - ref) / std::fmax(std::fabs(ref), 1e-30);
    if (k == (1u << 24)) err = std::fabs(got);  // log(1) = 0 exactly
    worst = std::fmax(worst, err);
  }
  EXPECT_LT(worst, 4e-7) << "worst relative error of drl_rng_logf";
  EXPECT_EQ(drl_rng_logf(1.0f), 0.0f);
}

TEST(Philox, SinCosPolynomialAccurateOnEveryAngle) {
  double worst = 0;
  for (uint32_t k = 0; k < (1u << 24); ++k) {
    float v = (float)k * 0x1p-24f;
    float s, c;
    drl_rng_sincos2pi(v, &s, &c);
    double a = 2.0 * M_PI * (double)v;
    worst = std::fmax(worst, std::fabs(s - std::sin(a)));
    worst = std::fmax(worst, std::fabs(c - std::cos(a)));
  }
  EXPECT_LT(worst, 3e-7) << "worst absolute error of drl_rng_sincos2pi";
}

// The normal transform agrees with a double-precision libm Box-Muller on the same words.
TEST(Philox, NormalMatchesDoubleBoxMuller) {
  double worst = 0;
  for (uint64_t i = 0; i < 1000000; ++i) {
    drl_philox_block b = drl_rng_block(99, 3, 7, i / 2);
    int pair = (int)(i & 1) * 2;
    double u = ((b.v[pair] >> 8) + 1.0) * 0x1p-24;
    double v = (b.v[pair + 1] >> 8) * 0x1p-24;
    double rad = std::sqrt(-2.0 * std::log(u));
    float r0, r1;
    drl_box_muller(b.v[pair], b.v[pair + 1], &r0, &r1);
    worst = std::fmax(worst, std::fabs(r0 - rad * std::sin(2 * M_PI * v)) / std::fmax(rad, 1.0));
    worst = std::fmax(worst, std::fabs(r1 - rad * std::cos(2 * M_PI * v)) / std::fmax(rad, 1.0));
  }
  EXPECT_LT(worst, 2e-6);
  // drl_rng_normal addresses element 2p / 2p+1 as the pair (r0, r1) of words 2p, 2p+1.
  drl_philox_block b = drl_rng_block(5, 1, 2, 10);
  float r0, r1;
  drl_box_muller(b.v[2], b.v[3], &r0, &r1);
  EXPECT_EQ(drl_rng_normal(5, 1, 2, 42), r0);
  EXPECT_EQ(drl_rng_normal(5, 1, 2, 43), r1);
}

namespace {

struct Moments {
  double mean = 0, var = 0, skew = 0, kurt = 0;
};

Moments moments(const std::vector<float> &x) {
  long double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  for (float f : x) s1 += f;
  double mean = (double)(s1 / x.size());
  for (float f : x) {
    long double d = f - mean;
    s2 += d * d;
    s3 += d * d * d;
    s4 += d * d * d * d;
  }
  Moments m;
  m.mean = mean;
  m.var = (double)(s2 / x.size());
  m.skew = (double)(s3 / x.size()) / std::pow(m.var, 1.5);
  m.kurt = (double)(s4 / x.size()) / (m.var * m.var);
  return m;
}

std::vector<float> fill(uint64_t n, drl_rng_dist dist, uint64_t seed = 2024, uint64_t offset = 0) {
  std::vector<float> x(n);
  drl_rng_stream s = {seed, 11, drl_rng_tag(DRL_RNG_TEST, 1, 2)};
  EXPECT_EQ(drl_rng_fill_cpu(x.data(), n, s, offset, dist), DRL_OK);
  return x;
}

}  // namespace

const uint64_t kSamples = 10000000;

TEST(PhiloxDistribution, Uniform) {
  std::vector<float> x = fill(kSamples, DRL_DIST_UNIFORM);
  Moments m = moments(x);
  // Standard errors at n = 1e7: mean 9e-5, variance 2.4e-5.
  EXPECT_NEAR(m.mean, 0.5, 5e-4);
  EXPECT_NEAR(m.var, 1.0 / 12.0, 1.5e-4);
  std::vector<long> bins(16, 0);
  for (float f : x) {
    ASSERT_GE(f, 0.0f);
    ASSERT_LT(f, 1.0f);
    bins[(int)(f * 16)]++;
  }
  double chi2 = 0, expect = kSamples / 16.0;
  for (long b : bins) chi2 += (b - expect) * (b - expect) / expect;
  EXPECT_LT(chi2, 37.7) << "chi-square with 15 dof above its 0.001 quantile";
}

TEST(PhiloxDistribution, Rademacher) {
  std::vector<float> x = fill(kSamples, DRL_DIST_RADEMACHER);
  long plus = 0;
  for (float f : x) {
    ASSERT_TRUE(f == 1.0f || f == -1.0f);
    plus += f > 0;
  }
  // Binomial(1e7, 1/2): sd = 1581.
  EXPECT_NEAR((double)plus, kSamples / 2.0, 8000.0);
}

TEST(PhiloxDistribution, NormalMomentsAndTails) {
  std::vector<float> x = fill(kSamples, DRL_DIST_NORMAL);
  Moments m = moments(x);
  EXPECT_NEAR(m.mean, 0.0, 1.6e-3);
  EXPECT_NEAR(m.var, 1.0, 2.5e-3);
  EXPECT_NEAR(m.skew, 0.0, 8e-3);
  EXPECT_NEAR(m.kurt, 3.0, 1.6e-2);
  long over2 = 0, over3 = 0, over4 = 0;
  float biggest = 0;
  for (float f : x) {
    ASSERT_TRUE(std::isfinite(f));
    float a = std::fabs(f);
    over2 += a > 2;
    over3 += a > 3;
    over4 += a > 4;
    biggest = std::fmax(biggest, a);
  }
  // Two-sided tails: P(|z|>2) = 0.0455, P(|z|>3) = 0.0026998, P(|z|>4) = 6.334e-5.
  EXPECT_NEAR(over2 / (double)kSamples, 0.0455003, 6e-4);
  EXPECT_NEAR(over3 / (double)kSamples, 0.0026998, 1e-4);
  EXPECT_NEAR(over4 / (double)kSamples, 6.334e-5, 1.5e-5);
  // 24-bit uniforms bound |z| by sqrt(-2 ln 2^-24) = 5.77; 1e7 samples reach past 5.
  EXPECT_GT(biggest, 5.0f);
  EXPECT_LT(biggest, 5.78f);
}

TEST(PhiloxStream, SeedsStepsAndTagsGiveDifferentStreams) {
  std::vector<uint32_t> base(64), other(64);
  drl_rng_stream s = {1, 0, 0};
  ASSERT_EQ(drl_rng_fill_cpu(base.data(), 64, s, 0, DRL_DIST_U32), DRL_OK);
  drl_rng_stream variants[3] = {{2, 0, 0}, {1, 1, 0}, {1, 0, 1}};
  for (drl_rng_stream v : variants) {
    ASSERT_EQ(drl_rng_fill_cpu(other.data(), 64, v, 0, DRL_DIST_U32), DRL_OK);
    int same = 0;
    for (int i = 0; i < 64; ++i) same += base[i] == other[i];
    EXPECT_LT(same, 2);
  }
}

// Nothing depends on chunking or thread count: filling in pieces at offsets, or with 1 or 2 threads, gives the same bits.
TEST(PhiloxStream, IndependentOfChunkingAndThreads) {
  const uint64_t n = 100003;
  for (drl_rng_dist dist : {DRL_DIST_U32, DRL_DIST_UNIFORM, DRL_DIST_RADEMACHER, DRL_DIST_NORMAL}) {
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    std::vector<float> one = fill(n, dist, 77);
    omp_set_num_threads(2);
    std::vector<float> two = fill(n, dist, 77);
    omp_set_num_threads(saved);
    EXPECT_EQ(0, std::memcmp(one.data(), two.data(), n * sizeof(float))) << "dist " << dist;
    std::vector<float> pieces(n);
    uint64_t cuts[] = {0, 1, 7, 4096, 50001, n};
    for (int c = 0; c + 1 < 6; ++c) {
      std::vector<float> part = fill(cuts[c + 1] - cuts[c], dist, 77, cuts[c]);
      std::memcpy(pieces.data() + cuts[c], part.data(), part.size() * sizeof(float));
    }
    EXPECT_EQ(0, std::memcmp(one.data(), pieces.data(), n * sizeof(float))) << "dist " << dist;
  }
}

TEST(PhiloxStream, FillRejectsBadArguments) {
  drl_device cpu;
  ASSERT_EQ(drl_device_open(&cpu, DRL_BACKEND_CPU, 0), DRL_OK);
  drl_rng_stream s = {1, 0, 0};
  EXPECT_EQ(drl_rng_fill(&cpu, nullptr, 10, s, 0, DRL_DIST_UNIFORM), DRL_ERR_INVALID_ARG);
  float out[4];
  EXPECT_EQ(drl_rng_fill(&cpu, out, 4, s, 0, (drl_rng_dist)99), DRL_ERR_INVALID_ARG);
  EXPECT_NE(std::string(drl_last_error()).find("unknown dist"), std::string::npos);
  EXPECT_EQ(drl_rng_fill(&cpu, out, 4, s, 0, DRL_DIST_NORMAL), DRL_OK);
  EXPECT_EQ(out[1], drl_rng_normal(1, 0, 0, 1));
}
