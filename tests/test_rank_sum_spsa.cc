// The pieces of decentralised SPSA on the CPU: the fixed-order tree sum over ranks (against the recursive definition,
// with inputs whose bits tell the tree from other orders, and the GPU's unrolled trees for counts 1..16 against the
// stack loop), the SPSA perturbation and ordered update (against naive element-by-element loops over the addressed
// Philox streams), and the LOG8 one-byte codec (table correctly rounded, unbiased stochastic rounding, saturation).
// Thread-count independence and argument errors for each.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "test_util.h"

extern "C" {
#include "engine/spsa_codec.h"
#include "kernels/philox.h"
#include "kernels/rank_sum.h"
#include "kernels/spsa.h"
}

namespace {

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// ---- the tree by its recursive definition: T(c) = P(2^j) + T(c - 2^j), P the perfect pairwise tree ----

float ref_perfect(const float *x, int m) {
  if (m == 1) return x[0];
  float a = ref_perfect(x, m / 2), b = ref_perfect(x + m / 2, m / 2);
  return a + b;
}

float ref_tree(const float *x, int c) {
  int p = 1;
  while (2 * p <= c) p *= 2;
  if (p == c) return ref_perfect(x, c);
  float a = ref_perfect(x, p), b = ref_tree(x + p, c - p);
  return a + b;
}

float sequential_sum(const float *x, int c) {
  float s = x[0];
  for (int i = 1; i < c; ++i) s = s + x[i];
  return s;
}

// Element k of the pieces in[i * n + k], i < count.
std::vector<float> column(const std::vector<float> &in, int count, int64_t n, int64_t k) {
  std::vector<float> x(count);
  for (int i = 0; i < count; ++i) x[i] = in[(size_t)i * n + k];
  return x;
}

// ---- naive SPSA: one element at a time from the raw stream functions, the tag composed here ----

float naive_z(const drl_spsa_stream &s, uint32_t q, uint64_t i) {
  uint32_t tag = drl_rng_tag(DRL_RNG_SPSA, q >> 12, q & 0xFFFu);
  if (s.dist == DRL_SPSA_NORMAL) return drl_rng_normal(s.seed, s.step, tag, i);
  return drl_rng_rademacher(s.seed, s.step, tag, i);
}

// theta + coef * z with the product rounded on its own (volatile: no contraction into an FMA).
float naive_update(float theta, float coef, float z) {
  volatile float p = coef * z;
  return theta + p;
}

std::vector<float> naive_apply(std::vector<float> theta, uint64_t offset, const drl_spsa_stream &s,
                               const std::vector<drl_spsa_contrib> &cs) {
  for (const drl_spsa_contrib &c : cs)
    for (size_t k = 0; k < theta.size(); ++k) theta[k] = naive_update(theta[k], c.coef, naive_z(s, c.q, offset + k));
  return theta;
}

std::vector<drl_spsa_contrib> random_contribs(int count, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<uint32_t> q(0, DRL_SPSA_MAX_Q - 1);
  std::uniform_real_distribution<float> coef(-1.0f, 1.0f);
  std::vector<drl_spsa_contrib> cs(count);
  for (auto &c : cs) {
    c.q = q(g);
    c.coef = coef(g);
  }
  return cs;
}

const drl_spsa_dist kDists[] = {DRL_SPSA_RADEMACHER, DRL_SPSA_NORMAL};

}  // namespace

// ---------------- rank_sum ----------------

TEST(RankSum, MatchesRecursiveDefinition) {
  drl_device dev = cpu_device();
  std::vector<int> counts;
  for (int c = 1; c <= 40; ++c) counts.push_back(c);
  for (int c : {64, 100, 1000, DRL_TREE_SUM_MAX_COUNT}) counts.push_back(c);
  const int64_t n = 257;
  for (int count : counts) {
    auto in = mixed_values((size_t)count * n, 100 + count);
    std::vector<float> out(n);
    ASSERT_EQ(drl_rank_sum(&dev, out.data(), in.data(), count, n), DRL_OK) << last_error();
    int differs_from_sequential = 0;
    for (int64_t k = 0; k < n; ++k) {
      auto x = column(in, count, n, k);
      ASSERT_EQ(bits(out[k]), bits(ref_tree(x.data(), count))) << "count " << count << " element " << k;
      differs_from_sequential += bits(out[k]) != bits(sequential_sum(x.data(), count));
    }
    // From 4 leaves on the tree is not the left-to-right order, and these inputs show it.
    if (count >= 4) {
      EXPECT_GT(differs_from_sequential, 0) << "count " << count;
    } else {
      EXPECT_EQ(differs_from_sequential, 0) << "count " << count << ": T(c) is sequential up to 3";
    }
  }
}

// Inputs where the exact order of the adds decides the result, with the expected bits worked out by hand.
TEST(RankSum, SpecificBitsShowTheTree) {
  drl_device dev = cpu_device();
  const int64_t n = 3;
  // count 4: the tree is (1 + 1e8) + (-1e8 + 1) = 1e8 - 1e8 = 0 (each +1 is lost next to 1e8, whose ulp is 8);
  // left to right it is ((1 + 1e8) - 1e8) + 1 = 1.
  {
    const float x[4] = {1.0f, 1e8f, -1e8f, 1.0f};
    auto in = mixed_values(4 * n, 7);
    for (int i = 0; i < 4; ++i) in[(size_t)i * n + 1] = x[i];
    std::vector<float> out(n);
    ASSERT_EQ(drl_rank_sum(&dev, out.data(), in.data(), 4, n), DRL_OK) << last_error();
    EXPECT_EQ(bits(out[1]), bits(0.0f)) << out[1];
    EXPECT_EQ(sequential_sum(x, 4), 1.0f);
  }
  // count 7: the stack ends as [P4 = 1e8, P2 = -1e8, 1] and folds from the top: 1e8 + (-1e8 + 1) = 0. Folding from
  // the bottom, (1e8 - 1e8) + 1, and left to right both give 1.
  {
    const float x[7] = {1e8f, 0.0f, 0.0f, 0.0f, -1e8f, 0.0f, 1.0f};
    auto in = mixed_values(7 * n, 8);
    for (int i = 0; i < 7; ++i) in[(size_t)i * n + 2] = x[i];
    std::vector<float> out(n);
    ASSERT_EQ(drl_rank_sum(&dev, out.data(), in.data(), 7, n), DRL_OK) << last_error();
    EXPECT_EQ(bits(out[2]), bits(0.0f)) << out[2];
    EXPECT_EQ(sequential_sum(x, 7), 1.0f);
    EXPECT_EQ(bits(drl_tree_sum_elem(x, 1, 7)), bits(0.0f));
  }
}

TEST(RankSum, InPlaceIntoPieceZero) {
  drl_device dev = cpu_device();
  const int count = 13;
  const int64_t n = 1001;
  auto in = mixed_values((size_t)count * n, 3);
  const auto orig = in;
  std::vector<float> expect(n);
  ASSERT_EQ(drl_rank_sum(&dev, expect.data(), in.data(), count, n), DRL_OK) << last_error();
  ASSERT_EQ(drl_rank_sum(&dev, in.data(), in.data(), count, n), DRL_OK) << last_error();
  EXPECT_TRUE(same_bits(std::vector<float>(in.begin(), in.begin() + n), expect));

  // Any other overlap is refused before anything is written.
  auto keep = in;
  EXPECT_EQ(drl_rank_sum(&dev, in.data() + 1, in.data(), count, n), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("overlaps");
  EXPECT_EQ(drl_rank_sum(&dev, in.data() + n, in.data(), count, n), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_rank_sum(&dev, in.data() + (count - 1) * n + n - 1, in.data(), count, n), DRL_ERR_INVALID_ARG);
  EXPECT_TRUE(same_bits(in, keep));
  // Just past the end is not an overlap.
  std::vector<float> both((size_t)(count + 1) * n);
  std::copy(orig.begin(), orig.end(), both.begin());
  ASSERT_EQ(drl_rank_sum(&dev, both.data() + count * n, both.data(), count, n), DRL_OK) << last_error();
  EXPECT_TRUE(same_bits(std::vector<float>(both.begin() + count * n, both.end()), expect));
}

TEST(RankSum, ThreadCountIndependent) {
  drl_device dev = cpu_device();
  const int count = 13;
  const int64_t n = 100003;  // past the OpenMP threshold, odd
  auto in = mixed_values((size_t)count * n, 4);
  std::vector<float> one(n), two(n), three(n);
  with_threads(1, [&] { ASSERT_EQ(drl_rank_sum(&dev, one.data(), in.data(), count, n), DRL_OK); });
  with_threads(2, [&] { ASSERT_EQ(drl_rank_sum(&dev, two.data(), in.data(), count, n), DRL_OK); });
  with_threads(3, [&] { ASSERT_EQ(drl_rank_sum(&dev, three.data(), in.data(), count, n), DRL_OK); });
  EXPECT_TRUE(same_bits(one, two));
  EXPECT_TRUE(same_bits(one, three));
  for (int64_t k = 0; k < n; k += 9973) {
    auto x = column(in, count, n, k);
    EXPECT_EQ(bits(one[k]), bits(ref_tree(x.data(), count))) << k;
  }
}

TEST(RankSum, ArgumentErrors) {
  drl_device dev = cpu_device();
  std::vector<float> in(8, 1.0f), out(4);
  EXPECT_EQ(drl_rank_sum(&dev, out.data(), in.data(), 0, 4), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("count 0");
  EXPECT_EQ(drl_rank_sum(&dev, out.data(), in.data(), DRL_TREE_SUM_MAX_COUNT + 1, 4), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("1..1024");
  EXPECT_EQ(drl_rank_sum(&dev, out.data(), in.data(), -1, 4), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_rank_sum(&dev, out.data(), in.data(), 2, -1), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative length");
  EXPECT_EQ(drl_rank_sum(&dev, nullptr, in.data(), 2, 4), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("NULL");
  EXPECT_EQ(drl_rank_sum(&dev, out.data(), nullptr, 2, 4), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_rank_sum(&dev, out.data(), in.data(), 2, INT64_MAX / 4), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("overflow");
  EXPECT_EQ(drl_rank_sum(&dev, nullptr, nullptr, 2, 0), DRL_OK) << "nothing to sum";
  ASSERT_EQ(drl_rank_sum(&dev, out.data(), in.data(), 2, 4), DRL_OK) << last_error();
  EXPECT_EQ(out[3], 2.0f);
}

// ---------------- rank_sum: the unrolled tree of the GPU (counts 1..16) ----------------

namespace {

// Pieces +-u 2^(8 (i % 3)), u uniform in [1, 2), signs mixed: adds of unlike magnitudes round, so the tree's shape
// shows in the bits.
std::vector<float> scaled_pieces(int count, int64_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(1.0f, 2.0f);
  std::bernoulli_distribution neg(0.5);
  std::vector<float> in((size_t)count * n);
  for (int i = 0; i < count; ++i)
    for (int64_t k = 0; k < n; ++k) in[(size_t)i * n + k] = std::ldexp(neg(g) ? -u(g) : u(g), 8 * (i % 3));
  return in;
}

// drl_tree_sum_unrolled<C> against drl_tree_sum_elem and the recursive definition, bit for bit, on every element;
// returns how many elements a left-to-right sum gets wrong.
template <int C>
int unrolled_differs_from_sequential(int64_t n) {
  auto in = scaled_pieces(C, n, 500 + C);
  int differs = 0;
  for (int64_t k = 0; k < n; ++k) {
    const float got = drl_tree_sum_unrolled<C>(in.data() + k, n);
    EXPECT_EQ(bits(got), bits(drl_tree_sum_elem(in.data() + k, n, C))) << "count " << C << " element " << k;
    auto x = column(in, C, n, k);
    EXPECT_EQ(bits(got), bits(ref_tree(x.data(), C))) << "count " << C << " element " << k;
    differs += bits(got) != bits(sequential_sum(x.data(), C));
  }
  return differs;
}

template <int... I>
std::vector<int> unrolled_all_counts(int64_t n, std::integer_sequence<int, I...>) {
  return {unrolled_differs_from_sequential<I + 1>(n)...};
}

}  // namespace

TEST(RankSum, UnrolledTreeEqualsTheStackTreeForEveryCountTo16) {
  static_assert(DRL_TREE_SUM_UNROLLED_MAX == 16, "the counts below");
  const int64_t n = 2003;
  std::vector<int> differs = unrolled_all_counts(n, std::make_integer_sequence<int, DRL_TREE_SUM_UNROLLED_MAX>());
  for (int c = 1; c <= DRL_TREE_SUM_UNROLLED_MAX; ++c) {
    if (c >= 4) {  // the inputs tell the tree from left to right
      EXPECT_GT(differs[c - 1], 0) << "count " << c;
    } else {
      EXPECT_EQ(differs[c - 1], 0) << "count " << c << ": T(c) is sequential up to 3";
    }
  }
  // The hand-worked cases of SpecificBitsShowTheTree: left to right gives 1, the tree 0.
  const float four[4] = {1.0f, 1e8f, -1e8f, 1.0f};
  EXPECT_EQ(bits(drl_tree_sum_unrolled<4>(four, 1)), bits(0.0f));
  const float seven[7] = {1e8f, 0.0f, 0.0f, 0.0f, -1e8f, 0.0f, 1.0f};
  EXPECT_EQ(bits(drl_tree_sum_unrolled<7>(seven, 1)), bits(0.0f));
  // A stride other than 1 walks the pieces (the 9s between them are not summed).
  const float strided[8] = {1.0f, 9.0f, 1e8f, 9.0f, -1e8f, 9.0f, 1.0f, 9.0f};
  EXPECT_EQ(bits(drl_tree_sum_unrolled<4>(strided, 2)), bits(0.0f));
  EXPECT_EQ(bits(drl_tree_sum_elem(strided, 2, 4)), bits(0.0f));
}

// ---------------- SPSA ----------------

TEST(Spsa, TagPacksQ) {
  EXPECT_EQ(drl_spsa_tag(0), (uint32_t)DRL_RNG_SPSA);
  EXPECT_EQ(drl_spsa_tag((5u << 12) | 77u), (uint32_t)DRL_RNG_SPSA | (77u << 4) | (5u << 16));
  EXPECT_EQ(drl_spsa_tag(DRL_SPSA_MAX_Q - 1), 0xFFFFFFF0u | (uint32_t)DRL_RNG_SPSA);
}

TEST(Spsa, PerturbMatchesElementwiseStreams) {
  drl_device dev = cpu_device();
  const uint32_t qs[] = {0, (5u << 12) | 77u, DRL_SPSA_MAX_Q - 1};
  const uint64_t offsets[] = {0, 1, 3, 5, (1ull << 33) + 3, (1ull << 63) + 1};
  const int64_t lengths[] = {1, 2, 3, 7, 1001};
  for (drl_spsa_dist dist : kDists) {
    drl_spsa_stream s = {0x0123456789abcdefull, 42, dist};
    for (uint32_t q : qs)
      for (uint64_t off : offsets)
        for (int64_t n : lengths) {
          auto theta = random_uniform(n, 11);
          const float coef = -1e-3f;
          std::vector<float> out(n + 2, 7.0f);  // two guard elements past the end
          ASSERT_EQ(drl_spsa_perturb(&dev, out.data(), theta.data(), n, off, s, q, coef), DRL_OK) << last_error();
          for (int64_t k = 0; k < n; ++k) {
            float want = naive_update(theta[k], coef, naive_z(s, q, off + k));
            ASSERT_EQ(bits(out[k]), bits(want)) << "dist " << dist << " q " << q << " offset " << off << " n " << n
                                                << " k " << k;
          }
          EXPECT_EQ(out[n], 7.0f) << "wrote past the end";
          EXPECT_EQ(out[n + 1], 7.0f) << "wrote past the end";
          EXPECT_TRUE(same_bits(theta, random_uniform(n, 11))) << "theta must only be read";
        }
  }
}

TEST(Spsa, ApplyMatchesSequentialLoop) {
  drl_device dev = cpu_device();
  const int64_t n = 1002;
  const uint64_t offset = 5;  // [5, 1007): both end blocks are partial
  for (drl_spsa_dist dist : kDists) {
    drl_spsa_stream s = {77, 3, dist};
    for (int count : {1, 3, 300}) {
      auto cs = random_contribs(count, 20 + count);
      auto theta = random_uniform(n + 1, 12);
      auto want = naive_apply(std::vector<float>(theta.begin(), theta.begin() + n), offset, s, cs);
      ASSERT_EQ(drl_spsa_apply(&dev, theta.data(), n, offset, s, cs.data(), count), DRL_OK) << last_error();
      EXPECT_TRUE(same_bits(std::vector<float>(theta.begin(), theta.begin() + n), want))
          << "dist " << dist << " count " << count;
      EXPECT_EQ(bits(theta[n]), bits(random_uniform(n + 1, 12)[n])) << "wrote past the end";
    }
  }
}

// The update's order is part of its contract: with normal z the same contributions in another order round
// differently somewhere.
TEST(Spsa, ApplyOrderMatters) {
  drl_device dev = cpu_device();
  const int64_t n = 1000;
  drl_spsa_stream s = {5, 9, DRL_SPSA_NORMAL};
  auto cs = random_contribs(8, 31);
  auto rev = std::vector<drl_spsa_contrib>(cs.rbegin(), cs.rend());
  auto a = random_uniform(n, 13), b = a;
  ASSERT_EQ(drl_spsa_apply(&dev, a.data(), n, 0, s, cs.data(), (int)cs.size()), DRL_OK) << last_error();
  ASSERT_EQ(drl_spsa_apply(&dev, b.data(), n, 0, s, rev.data(), (int)rev.size()), DRL_OK) << last_error();
  EXPECT_TRUE(same_bits(a, naive_apply(random_uniform(n, 13), 0, s, cs)));
  EXPECT_TRUE(same_bits(b, naive_apply(random_uniform(n, 13), 0, s, rev)));
  int differ = 0;
  for (int64_t k = 0; k < n; ++k) differ += bits(a[k]) != bits(b[k]);
  EXPECT_GT(differ, 0) << "reversing the contributions changed no bit: the test shows nothing";
}

TEST(Spsa, SlicesMatchWhole) {
  drl_device dev = cpu_device();
  const int64_t n = 1001;
  const uint64_t base = 3;
  const int64_t split = 6;  // the second slice starts at flat index 9, inside a Philox block
  for (drl_spsa_dist dist : kDists) {
    drl_spsa_stream s = {1234, 8, dist};
    auto cs = random_contribs(5, 41);
    auto whole = random_uniform(n, 14), parts = whole;
    ASSERT_EQ(drl_spsa_apply(&dev, whole.data(), n, base, s, cs.data(), 5), DRL_OK) << last_error();
    ASSERT_EQ(drl_spsa_apply(&dev, parts.data(), split, base, s, cs.data(), 5), DRL_OK) << last_error();
    ASSERT_EQ(drl_spsa_apply(&dev, parts.data() + split, n - split, base + split, s, cs.data(), 5), DRL_OK)
        << last_error();
    EXPECT_TRUE(same_bits(whole, parts)) << "apply, dist " << dist;

    auto theta = random_uniform(n, 15);
    std::vector<float> one(n), two(n);
    ASSERT_EQ(drl_spsa_perturb(&dev, one.data(), theta.data(), n, base, s, 17, 0.25f), DRL_OK) << last_error();
    ASSERT_EQ(drl_spsa_perturb(&dev, two.data(), theta.data(), split, base, s, 17, 0.25f), DRL_OK);
    ASSERT_EQ(drl_spsa_perturb(&dev, two.data() + split, theta.data() + split, n - split, base + split, s, 17, 0.25f),
              DRL_OK);
    EXPECT_TRUE(same_bits(one, two)) << "perturb, dist " << dist;
  }
}

TEST(Spsa, ThreadCountIndependent) {
  drl_device dev = cpu_device();
  const int64_t n = 50001;  // past both OpenMP thresholds
  for (drl_spsa_dist dist : kDists) {
    drl_spsa_stream s = {99, 1, dist};
    auto cs = random_contribs(40, 51);
    auto theta = random_uniform(n, 16);
    std::vector<std::vector<float>> applied, perturbed;
    for (int t : {1, 2, 3}) {
      with_threads(t, [&] {
        auto a = theta;
        ASSERT_EQ(drl_spsa_apply(&dev, a.data(), n, 1, s, cs.data(), 40), DRL_OK) << last_error();
        applied.push_back(a);
        std::vector<float> p(n);
        ASSERT_EQ(drl_spsa_perturb(&dev, p.data(), theta.data(), n, 1, s, 3, 1e-3f), DRL_OK) << last_error();
        perturbed.push_back(p);
      });
    }
    ASSERT_EQ(applied.size(), 3u);
    EXPECT_TRUE(same_bits(applied[0], applied[1]));
    EXPECT_TRUE(same_bits(applied[0], applied[2]));
    EXPECT_TRUE(same_bits(perturbed[0], perturbed[1]));
    EXPECT_TRUE(same_bits(perturbed[0], perturbed[2]));
    for (int64_t k = 0; k < n; k += 4999)
      EXPECT_EQ(bits(perturbed[0][k]), bits(naive_update(theta[k], 1e-3f, naive_z(s, 3, 1 + k)))) << k;
  }
}

TEST(Spsa, ArgumentErrors) {
  drl_device dev = cpu_device();
  drl_spsa_stream s = {1, 2, DRL_SPSA_RADEMACHER};
  std::vector<float> theta(16, 1.0f), out(16);
  EXPECT_EQ(drl_spsa_perturb(&dev, out.data(), theta.data(), -1, 0, s, 0, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative length");
  EXPECT_EQ(drl_spsa_perturb(&dev, nullptr, theta.data(), 16, 0, s, 0, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("NULL");
  EXPECT_EQ(drl_spsa_perturb(&dev, out.data(), nullptr, 16, 0, s, 0, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_spsa_perturb(&dev, theta.data(), theta.data(), 16, 0, s, 0, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("overlaps");
  EXPECT_EQ(drl_spsa_perturb(&dev, theta.data() + 3, theta.data(), 8, 0, s, 0, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_spsa_perturb(&dev, theta.data(), theta.data() + 8, 8, 0, s, 0, 1.0f), DRL_OK) << "adjacent is fine";
  EXPECT_EQ(drl_spsa_perturb(&dev, out.data(), theta.data(), 16, 0, s, DRL_SPSA_MAX_Q, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("2^28");
  EXPECT_EQ(drl_spsa_perturb(&dev, out.data(), theta.data(), 16, 0, s, 0, NAN), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("non-finite");
  EXPECT_EQ(drl_spsa_perturb(&dev, out.data(), theta.data(), 16, UINT64_MAX - 3, s, 0, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("overflows");
  drl_spsa_stream bad = s;
  bad.dist = (drl_spsa_dist)2;
  EXPECT_EQ(drl_spsa_perturb(&dev, out.data(), theta.data(), 16, 0, bad, 0, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("distribution");

  std::vector<drl_spsa_contrib> cs = {{1, 0.5f}, {2, 0.25f}, {DRL_SPSA_MAX_Q, 1.0f}};
  std::fill(theta.begin(), theta.end(), 1.0f);
  auto keep = theta;
  EXPECT_EQ(drl_spsa_apply(&dev, theta.data(), 16, 0, s, cs.data(), 3), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("contribution 2");
  EXPECT_TRUE(same_bits(theta, keep)) << "a bad contribution must be refused before any is applied";
  cs[2] = {3, INFINITY};
  EXPECT_EQ(drl_spsa_apply(&dev, theta.data(), 16, 0, s, cs.data(), 3), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("non-finite");
  EXPECT_EQ(drl_spsa_apply(&dev, theta.data(), -2, 0, s, cs.data(), 2), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_spsa_apply(&dev, nullptr, 16, 0, s, cs.data(), 2), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_spsa_apply(&dev, theta.data(), 16, 0, s, nullptr, 2), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_spsa_apply(&dev, theta.data(), 16, 0, s, cs.data(), -1), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_spsa_apply(&dev, theta.data(), 16, 0, bad, cs.data(), 2), DRL_ERR_INVALID_ARG);
  EXPECT_TRUE(same_bits(theta, keep));
  EXPECT_EQ(drl_spsa_apply(&dev, theta.data(), 16, 0, s, nullptr, 0), DRL_OK) << "count 0 is a no-op";
  EXPECT_EQ(drl_spsa_apply(&dev, nullptr, 0, 0, s, cs.data(), 2), DRL_OK) << "n 0 is a no-op";
  EXPECT_TRUE(same_bits(theta, keep));
}

// ---------------- LOG8 codec ----------------

namespace {
float level(int k) { return drl_spsa_codec_decode((uint8_t)k); }
const double kRatioMinusOne = std::exp(0.125) - 1.0;
}  // namespace

TEST(Log8, TableIsCorrectlyRoundedExp) {
  EXPECT_EQ(bits(drl_spsa_codec_decode(0)), 0u);
  EXPECT_EQ(bits(drl_spsa_codec_decode(0x80)), 0u) << "k = 0 is +0.0f for both signs";
  EXPECT_EQ(level(64), 1.0f);
  for (int k = 1; k < 128; ++k) {
    float t = level(k);
    long double e = expl((long double)(k - 64) / 8.0L);  // (k - 64) / 8 is exact
    long double d = fabsl((long double)t - e);
    // Correctly rounded: no float is nearer (the neighbours on both sides are at least as far).
    EXPECT_LE(d, fabsl((long double)std::nextafter(t, INFINITY) - e)) << "k " << k;
    EXPECT_LE(d, fabsl((long double)std::nextafter(t, 0.0f) - e)) << "k " << k;
    EXPECT_LE(d, 0.5L * ((long double)std::nextafter(t, INFINITY) - t)) << "k " << k;
    EXPECT_GT(t, level(k - 1)) << "strictly increasing at k " << k;
    EXPECT_EQ(bits(drl_spsa_codec_decode((uint8_t)(0x80 | k))), bits(-t)) << "sign bit at k " << k;
  }
  EXPECT_NEAR(level(1), 3.80129e-4, 1e-9);  // exp(-7.875)
  EXPECT_NEAR(level(127), 2630.686, 1e-3);  // exp(7.875)
}

TEST(Log8, ZeroAndNonFinite) {
  for (float u : {0.0f, 0.5f, 0.99999994f}) {
    EXPECT_EQ(drl_spsa_codec_encode(0.0f, u), 0);
    EXPECT_EQ(drl_spsa_codec_encode(-0.0f, u), 0);
    EXPECT_EQ(drl_spsa_codec_encode(NAN, u), 0);
    EXPECT_EQ(drl_spsa_codec_encode(INFINITY, u), 0);
    EXPECT_EQ(drl_spsa_codec_encode(-INFINITY, u), 0);
  }
  EXPECT_EQ(drl_spsa_codec_encode(1.0f, 0.3f), 64);
  EXPECT_EQ(drl_spsa_codec_encode(-1.0f, 0.3f), 0xC0);
}

TEST(Log8, LevelsEncodeToThemselves) {
  for (int k = 1; k < 128; ++k)
    for (float u : {0.0f, 1e-7f, 0.25f, 0.5f, 0.99999994f}) {
      EXPECT_EQ(drl_spsa_codec_encode(level(k), u), k) << "k " << k << " u " << u;
      EXPECT_EQ(drl_spsa_codec_encode(-level(k), u), 0x80 | k) << "k " << k << " u " << u;
    }
}

TEST(Log8, SignSymmetry) {
  std::mt19937 g(61);
  std::uniform_real_distribution<float> lg(-10.0f, 10.0f), uu(0.0f, 1.0f);
  int nonzero = 0;
  for (int i = 0; i < 20000; ++i) {
    float x = std::exp(lg(g)), u = uu(g);
    uint8_t p = drl_spsa_codec_encode(x, u), m = drl_spsa_codec_encode(-x, u);
    if (p == 0) {
      EXPECT_EQ(m, 0) << x;
    } else {
      ++nonzero;
      EXPECT_EQ(m, p | 0x80) << x;
      EXPECT_EQ(bits(drl_spsa_codec_decode(m)), bits(-drl_spsa_codec_decode(p)));
    }
  }
  EXPECT_GT(nonzero, 10000);
}

namespace {
// Encodes g with the N uniforms (i + 0.5) / N: the frequency of each outcome is within 1/N of its probability.
const int kN = 100000;
template <class F>
void for_grid(F f) {
  for (int i = 0; i < kN; ++i) f((float)((i + 0.5) / kN));
}
}  // namespace

TEST(Log8, HalfwayPicksEachNeighbourHalfTheTime) {
  for (int k : {1, 2, 30, 63, 64, 65, 100, 126}) {
    float g = (float)(((double)level(k) + level(k + 1)) / 2);
    double p = ((double)g - level(k)) / ((double)level(k + 1) - level(k));  // ~0.5, exact for the float g
    int up = 0, other = 0;
    for_grid([&](float u) {
      uint8_t b = drl_spsa_codec_encode(g, u);
      up += b == k + 1;
      other += b != k && b != k + 1;
    });
    EXPECT_EQ(other, 0) << "k " << k << ": only the two neighbours may come out";
    EXPECT_NEAR((double)up / kN, p, 2.0 / kN) << "k " << k;
    EXPECT_NEAR(p, 0.5, 1e-6) << "k " << k;
  }
}

TEST(Log8, UnbiasedOverTheRange) {
  for (int j = 0; j < 50; ++j) {
    // log-spaced from just above L_1 to just below L_127, alternating signs, never on a level
    float g = (float)std::exp(-63.0 / 8 + 0.01 + j * (126.0 / 8 - 0.02) / 49) * (j % 2 ? -1.0f : 1.0f);
    double sum = 0.0;
    for_grid([&](float u) { sum += drl_spsa_codec_decode(drl_spsa_codec_encode(g, u)); });
    EXPECT_NEAR(sum / kN / g, 1.0, 1e-5) << "g " << g;
  }
}

TEST(Log8, BelowTheSmallestLevelIsUnbiased) {
  for (double f : {0.001, 0.1, 0.37, 0.5, 0.9}) {
    for (float sign : {1.0f, -1.0f}) {
      float g = sign * (float)(f * level(1));
      double sum = 0.0;
      int other = 0;
      for_grid([&](float u) {
        uint8_t b = drl_spsa_codec_encode(g, u);
        other += b != 0 && b != (sign > 0 ? 1 : 0x81);
        sum += drl_spsa_codec_decode(b);
      });
      EXPECT_EQ(other, 0) << "g " << g << ": only 0 and L_1 may come out";
      EXPECT_NEAR(sum / kN, g, 2.0 / kN * level(1)) << "g " << g;
    }
  }
}

TEST(Log8, SaturatesAboveTheRange) {
  for (float g : {level(127), std::nextafter(level(127), INFINITY), 1.5f * level(127), 1e30f, FLT_MAX})
    for (float u : {0.0f, 0.5f, 0.99999994f}) {
      EXPECT_EQ(drl_spsa_codec_encode(g, u), 127) << g;
      EXPECT_EQ(drl_spsa_codec_encode(-g, u), 0xFF) << g;
    }
  // Just below the top level still rounds stochastically between 126 and 127.
  float g = std::nextafter(level(127), 0.0f);
  EXPECT_EQ(drl_spsa_codec_encode(g, 0.0f), 127);
  EXPECT_EQ(drl_spsa_codec_encode(g, 0.99999994f), 126);
}

TEST(Log8, EveryDrawWithinOneLevelStep) {
  std::vector<float> gs;
  for (int i = 0; i <= 20000; ++i) gs.push_back((float)std::exp(-63.0 / 8 + i * (126.0 / 8) / 20000));
  for (int k = 1; k < 128; ++k) {  // the worst cases sit just above and just below each level
    gs.push_back(std::nextafter(level(k), INFINITY));
    gs.push_back(std::nextafter(level(k), 0.0f));
  }
  double worst = 0.0;
  for (float g : gs) {
    if (g < level(1) || g > level(127)) continue;
    for (float u : {0.0f, 1e-7f, 0.1f, 0.3f, 0.5f, 0.7f, 0.9f, 0.99999994f}) {
      double d = drl_spsa_codec_decode(drl_spsa_codec_encode(g, u));
      double rel = std::fabs(d - g) / g;
      worst = std::max(worst, rel);
      ASSERT_LE(rel, kRatioMinusOne + 1e-6) << "g " << g << " u " << u;
    }
  }
  EXPECT_GT(worst, 0.5 * kRatioMinusOne) << "the grid never rounded far: the bound was not exercised";
}
