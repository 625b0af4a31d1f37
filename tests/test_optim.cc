// AdamW against a naive double-precision implementation of its formula, decoupled weight decay, grad_scale and
// thread-count independence; drl_sum_squares against a naive double sum and against its documented fixed layout.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "test_util.h"

extern "C" {
#include "kernels/adamw.h"
#include "kernels/reduce.h"
}

namespace {

drl_adamw_hparams hparams(int step) {
  drl_adamw_hparams hp;
  hp.lr = 1e-3f;
  hp.beta1 = 0.9f;
  hp.beta2 = 0.999f;
  hp.eps = 1e-8f;
  hp.weight_decay = 0.1f;
  hp.step = step;
  hp.grad_scale = 1.0f;
  return hp;
}

// The formula of adamw.h in double, on double state.
void naive_adamw(std::vector<double> &p, const std::vector<float> &grads, std::vector<double> &m,
                 std::vector<double> &v, drl_adamw_hparams hp) {
  double b1 = hp.beta1, b2 = hp.beta2;
  double bc1 = 1.0 - std::pow(b1, hp.step), bc2 = 1.0 - std::pow(b2, hp.step);
  for (size_t i = 0; i < p.size(); ++i) {
    double g = (double)grads[i] * hp.grad_scale;
    m[i] = b1 * m[i] + (1.0 - b1) * g;
    v[i] = b2 * v[i] + (1.0 - b2) * g * g;
    double mh = m[i] / bc1, vh = v[i] / bc2;
    p[i] -= (double)hp.lr * (mh / (std::sqrt(vh) + hp.eps) + (double)hp.weight_decay * p[i]);
  }
}

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_close(const std::vector<float> &got, const std::vector<double> &want, double rel, double abs,
                  const char *what, int step) {
  int bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; ++i)
    if (!(std::fabs(got[i] - want[i]) <= abs + rel * std::fabs(want[i]))) {
      ADD_FAILURE() << what << "[" << i << "] after step " << step << ": " << got[i] << " vs " << want[i];
      ++bad;
    }
}

}  // namespace

// One and then ten steps, each with fresh gradients, grad_scale 0.5 from step 2 on, against double state.
TEST(AdamW, MatchesNaiveDoubleFormula) {
  drl_device dev = cpu_device();
  const size_t n = 4099;
  std::vector<float> p = random_normal(n, 1.0f, 1), m(n, 0.0f), v(n, 0.0f);
  std::vector<double> pd(p.begin(), p.end()), md(n, 0.0), vd(n, 0.0);
  for (int step = 1; step <= 10; ++step) {
    std::vector<float> g = random_normal(n, 0.1f, 100 + step);
    drl_adamw_hparams hp = hparams(step);
    if (step > 1) hp.grad_scale = 0.5f;
    ASSERT_EQ(drl_adamw(&dev, p.data(), g.data(), m.data(), v.data(), (int64_t)n, hp), DRL_OK) << drl_last_error();
    naive_adamw(pd, g, md, vd, hp);
    // m can cancel to ~1e-5 while its terms are ~0.05: the float rounding of those terms sets the absolute floor.
    expect_close(m, md, 1e-5, 1e-8, "m", step);
    expect_close(v, vd, 1e-5, 1e-14, "v", step);
    // Parameters move by ~lr (1e-3) per step and are rounded to float each step: allow ~1 ulp per step so far;
    // a missing bias correction or weight-decay term is off by 1e-4 or more.
    expect_close(p, pd, 1e-6, 1e-9, "params", step);
  }
}

// With zero gradients the Adam term is 0/(0+eps) = 0 and each step is exactly p <- p - lr (wd p).
TEST(AdamW, WeightDecayIsDecoupled) {
  drl_device dev = cpu_device();
  const size_t n = 1000;
  std::vector<float> p = random_normal(n, 2.0f, 3), g(n, 0.0f), m(n, 0.0f), v(n, 0.0f);
  drl_adamw_hparams hp = hparams(1);
  hp.lr = 0.01f;
  for (int step = 1; step <= 3; ++step) {
    hp.step = step;
    std::vector<float> want(n);
    for (size_t i = 0; i < n; ++i) {
      volatile float decay = hp.weight_decay * p[i];  // volatile: no contraction into an FMA here
      volatile float delta = hp.lr * decay;
      want[i] = p[i] - delta;
    }
    ASSERT_EQ(drl_adamw(&dev, p.data(), g.data(), m.data(), v.data(), (int64_t)n, hp), DRL_OK);
    EXPECT_TRUE(same_bits(p, want)) << "step " << step;
    for (size_t i = 0; i < n; ++i) ASSERT_TRUE(m[i] == 0.0f && v[i] == 0.0f);
  }
  // Decoupled: weight decay never enters the moments, so m and v are the same bits with or without it.
  std::vector<float> g2 = random_normal(n, 0.3f, 4), pa = random_normal(n, 1.0f, 5), pb = pa;
  std::vector<float> ma(n, 0.0f), va(n, 0.0f), mb(n, 0.0f), vb(n, 0.0f);
  drl_adamw_hparams with = hparams(1), without = hparams(1);
  without.weight_decay = 0.0f;
  ASSERT_EQ(drl_adamw(&dev, pa.data(), g2.data(), ma.data(), va.data(), (int64_t)n, with), DRL_OK);
  ASSERT_EQ(drl_adamw(&dev, pb.data(), g2.data(), mb.data(), vb.data(), (int64_t)n, without), DRL_OK);
  EXPECT_TRUE(same_bits(ma, mb));
  EXPECT_TRUE(same_bits(va, vb));
  EXPECT_FALSE(same_bits(pa, pb));
}

// grad_scale multiplies the gradient first: (2 g, scale 0.5) is exactly (g, scale 1).
TEST(AdamW, GradScaleScalesTheGradient) {
  drl_device dev = cpu_device();
  const size_t n = 777;
  std::vector<float> g = random_normal(n, 0.2f, 6), g2(n);
  for (size_t i = 0; i < n; ++i) g2[i] = 2.0f * g[i];
  std::vector<float> pa = random_normal(n, 1.0f, 7), pb = pa, ma(n, 0.1f), mb = ma, va(n, 0.01f), vb = va;
  drl_adamw_hparams a = hparams(3), b = hparams(3);
  b.grad_scale = 0.5f;
  ASSERT_EQ(drl_adamw(&dev, pa.data(), g.data(), ma.data(), va.data(), (int64_t)n, a), DRL_OK);
  ASSERT_EQ(drl_adamw(&dev, pb.data(), g2.data(), mb.data(), vb.data(), (int64_t)n, b), DRL_OK);
  EXPECT_TRUE(same_bits(pa, pb));
  EXPECT_TRUE(same_bits(ma, mb));
  EXPECT_TRUE(same_bits(va, vb));
}

TEST(AdamW, BitIdenticalAcrossThreadCounts) {
  drl_device dev = cpu_device();
  const size_t n = 100003;
  std::vector<float> g = random_normal(n, 0.1f, 8), p1 = random_normal(n, 1.0f, 9), p2 = p1, m1(n, 0.0f), m2 = m1,
                     v1(n, 0.0f), v2 = v1;
  int saved = omp_get_max_threads();
  for (int step = 1; step <= 3; ++step) {
    omp_set_num_threads(1);
    ASSERT_EQ(drl_adamw(&dev, p1.data(), g.data(), m1.data(), v1.data(), (int64_t)n, hparams(step)), DRL_OK);
    omp_set_num_threads(2);
    ASSERT_EQ(drl_adamw(&dev, p2.data(), g.data(), m2.data(), v2.data(), (int64_t)n, hparams(step)), DRL_OK);
  }
  omp_set_num_threads(saved);
  EXPECT_TRUE(same_bits(p1, p2));
  EXPECT_TRUE(same_bits(m1, m2));
  EXPECT_TRUE(same_bits(v1, v2));
}

TEST(AdamW, RejectsBadHyperparameters) {
  drl_device dev = cpu_device();
  float p = 1, g = 1, m = 0, v = 0;
  drl_adamw_hparams hp = hparams(0);
  EXPECT_EQ(drl_adamw(&dev, &p, &g, &m, &v, 1, hp), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("step");
  hp = hparams(1);
  hp.beta2 = 1.0f;
  EXPECT_EQ(drl_adamw(&dev, &p, &g, &m, &v, 1, hp), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("betas");
  EXPECT_EQ(p, 1.0f);
  EXPECT_EQ(drl_adamw(&dev, nullptr, nullptr, nullptr, nullptr, 0, hparams(1)), DRL_OK);
}

namespace {

double sum_squares(const std::vector<float> &x) {
  drl_device dev = cpu_device();
  std::vector<char> scratch(drl_reduce_scratch_bytes(&dev, (int64_t)x.size()));
  double out = -1.0;
  EXPECT_EQ(drl_sum_squares(&dev, &out, x.data(), (int64_t)x.size(), scratch.empty() ? nullptr : scratch.data()),
            DRL_OK)
      << drl_last_error();
  return out;
}

}  // namespace

TEST(SumSquares, MatchesNaiveDoubleSum) {
  SKIP_UNLESS_EXTENDED_LONG_DOUBLE();
  for (int64_t n : {0L, 1L, 4095L, 4096L, 4097L, 1000000L}) {
    std::vector<float> x = random_normal((size_t)n, 1.5f, (uint32_t)n + 1);
    long double naive = 0.0L;  // extended precision, so the reference's own rounding stays far below the tolerance
    for (float v : x) naive += (long double)v * v;
    double got = sum_squares(x);
    if (n == 0)
      EXPECT_EQ(got, 0.0);
    else
      EXPECT_NEAR(got, (double)naive, 1e-14 * (double)naive) << "n " << n;
  }
}

// The result is exactly the layout reduce.h documents (what the GPU computes), evaluated here one lane at a time.
// Magnitudes spread over 2^-20..2^20 make every lane's rounding reach the total, so any other order shows.
TEST(SumSquares, FollowsTheDocumentedLayout) {
  for (int64_t n : {1L, 4097L, 1000000L + 123L}) {
    std::vector<float> x = random_normal((size_t)n, 1.0f, 77);
    std::mt19937 rng(78);
    std::uniform_int_distribution<int> e(-20, 20);
    for (float &v : x) v = std::ldexp(v, e(rng));
    int64_t chunks = (n + DRL_REDUCE_CHUNK - 1) / DRL_REDUCE_CHUNK;
    std::vector<double> partial(chunks), acc(DRL_REDUCE_LANES);
    for (int64_t c = 0; c < chunks; ++c) {
      for (int l = 0; l < DRL_REDUCE_LANES; ++l) acc[l] = drl_sumsq_lane(x.data(), n, c, l);
      partial[c] = drl_reduce_tree(acc.data());
    }
    for (int l = 0; l < DRL_REDUCE_LANES; ++l) acc[l] = drl_sum_lane(partial.data(), chunks, l);
    double want = drl_reduce_tree(acc.data()), got = sum_squares(x);
    EXPECT_EQ(std::memcmp(&want, &got, sizeof got), 0) << "n " << n << ": " << got << " vs " << want;
  }
  // Only lane 0 of the first chunk is non-zero, so the total is that lane's sum. In index order 1 comes first and
  // each 2^-54 then vanishes against it; any other order would let the small squares add up first.
  std::vector<float> x(4096, 0.0f);
  x[0] = 1.0f;
  for (int k = 1; k < DRL_REDUCE_CHUNK / DRL_REDUCE_LANES; ++k) x[k * DRL_REDUCE_LANES] = 0x1p-27f;
  EXPECT_EQ(sum_squares(x), 1.0);
}

TEST(SumSquares, BitIdenticalAcrossThreadCounts) {
  std::vector<float> x = random_normal(1000007, 1.0f, 12);
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  double a = sum_squares(x);
  omp_set_num_threads(2);
  double b = sum_squares(x);
  omp_set_num_threads(saved);
  EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0) << a << " vs " << b;
}

TEST(SumSquares, ScratchSizeAndErrors) {
  drl_device dev = cpu_device();
  EXPECT_EQ(drl_reduce_scratch_bytes(&dev, 0), 0);
  EXPECT_EQ(drl_reduce_scratch_bytes(&dev, 4096), 2 * 8);
  EXPECT_EQ(drl_reduce_scratch_bytes(&dev, 4097), 3 * 8);
  double out = 0;
  float x = 1;
  EXPECT_EQ(drl_sum_squares(&dev, &out, &x, 1, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_sum_squares(&dev, &out, &x, -1, nullptr), DRL_ERR_INVALID_ARG);
}

// A buffer cut at multiples of the chunk: each part's partials are its slice of the whole's, and their combination
// is the whole's sum of squares bit for bit (ZeRO-1's gradient norm).
TEST(SumSquares, ShardedPartialsGiveTheWholeSum) {
  drl_device dev = cpu_device();
  const int64_t n = 5 * DRL_REDUCE_CHUNK + 77;
  std::vector<float> x = random_normal((size_t)n, 3.0f, 91);
  std::vector<double> partials(drl_reduce_chunks(n)), scratch(drl_reduce_chunks(n) + 1);
  const int64_t cuts[] = {0, 2 * DRL_REDUCE_CHUNK, 3 * DRL_REDUCE_CHUNK, n};
  for (int p = 0; p < 3; ++p)
    ASSERT_EQ(drl_sum_squares_partials(&dev, partials.data() + cuts[p] / DRL_REDUCE_CHUNK, x.data() + cuts[p],
                                       cuts[p + 1] - cuts[p], scratch.data()),
              DRL_OK);
  double got = drl_reduce_partials(partials.data(), (int64_t)partials.size()), want = sum_squares(x);
  EXPECT_EQ(std::memcmp(&got, &want, sizeof got), 0) << got << " vs " << want;
  EXPECT_EQ(drl_reduce_chunks(0), 0);
  EXPECT_EQ(drl_reduce_chunks(DRL_REDUCE_CHUNK + 1), 2);
}

// AdamW over a range of a laid-out buffer equals the same elements of the whole step, with decay per tensor.
TEST(AdamW, LayoutRangeEqualsTheWholeStepThere) {
  drl_device dev = cpu_device();
  drl_layout lay;
  ASSERT_EQ(drl_layout_init(&lay, 3), DRL_OK);
  ASSERT_EQ(drl_layout_add(&lay, "w", 40, 30, 1), DRL_OK);
  ASSERT_EQ(drl_layout_add(&lay, "g", 50, 1, 0), DRL_OK);
  ASSERT_EQ(drl_layout_add(&lay, "u", 20, 20, 1), DRL_OK);
  const int64_t n = lay.total, lo = 1100, hi = 1500;  // crosses all three tensors' borders
  std::vector<float> p = random_normal(n, 1.0f, 5), g = random_normal(n, 1.0f, 6), q = p;
  std::vector<float> m(n, 0.f), v(n, 0.f), mr(hi - lo, 0.f), vr(hi - lo, 0.f);
  drl_adamw_hparams hp = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.3f, 1, 1.0f};
  ASSERT_EQ(drl_adamw_layout(&dev, &lay, p.data(), g.data(), m.data(), v.data(), 0, n, hp), DRL_OK);
  ASSERT_EQ(drl_adamw_layout(&dev, &lay, q.data(), g.data(), mr.data(), vr.data(), lo, hi, hp), DRL_OK);
  EXPECT_EQ(0, memcmp(p.data() + lo, q.data() + lo, (hi - lo) * sizeof(float)));
  EXPECT_EQ(0, memcmp(m.data() + lo, mr.data(), (hi - lo) * sizeof(float)));
  std::vector<float> orig = random_normal(n, 1.0f, 5);
  EXPECT_EQ(0, memcmp(q.data(), orig.data(), lo * sizeof(float))) << "outside the range nothing moves";
  // Weight decay reached the matrices and skipped the gain vector "g".
  hp.weight_decay = 0.0f;
  std::vector<float> p0 = orig, m0(n, 0.f), v0(n, 0.f);
  ASSERT_EQ(drl_adamw_layout(&dev, &lay, p0.data(), g.data(), m0.data(), v0.data(), 0, n, hp), DRL_OK);
  EXPECT_NE(p0[0], p[0]);
  EXPECT_EQ(p0[1210], p[1210]);
  EXPECT_EQ(drl_adamw_layout(&dev, &lay, p.data(), g.data(), m.data(), v.data(), 5, n + 1, hp), DRL_ERR_INVALID_ARG);
  drl_layout_free(&lay);
}
