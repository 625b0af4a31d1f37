// MoE kernels on the CPU: the engine-owned e^x and sigmoid (accuracy in ulp over dense sweeps, monotonicity, exact
// values and saturation), the router (against a naive stable-sort reference and double-precision gates, the tie rule,
// the bias that moves only the selection), its backward (central finite differences of a double reference with the
// selection held fixed; exact zeros where no gradient flows), dispatch (against std::stable_sort), gather / combine /
// combine_backward (against naive loops in the same order, and finite differences), thread-count independence and
// argument errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include "test_util.h"

extern "C" {
#include "kernels/moe.h"
}

namespace {

template <class T>
bool same_bits(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Distance in ulps between two finite floats of the same sign.
int64_t ulp_diff(float a, float b) { return std::llabs((int64_t)bits(a) - (int64_t)bits(b)); }

// ---- router references ----

// The K experts by descending biased score s + b (float, as the selection is defined), ties to the lower index:
// std::stable_sort keeps equal keys in index order.
std::vector<int32_t> ref_select(const float *s, const float *bias, int E, int K) {
  std::vector<float> x(E);
  for (int e = 0; e < E; ++e) x[e] = bias ? s[e] + bias[e] : s[e];
  std::vector<int32_t> idx(E);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
  idx.resize(K);
  return idx;
}

double sigmoid_d(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// Gates of one token in double: scale * s[sel_k] (/ (sum_k s[sel_k] + 1e-20)).
std::vector<double> ref_gates(const std::vector<double> &s, const int32_t *sel, int K, int normalize, double scale) {
  double sum = 0.0;
  for (int k = 0; k < K; ++k) sum += s[sel[k]];
  std::vector<double> g(K);
  for (int k = 0; k < K; ++k) g[k] = scale * s[sel[k]] / (normalize ? sum + (double)1e-20f : 1.0);
  return g;
}

struct RouteOut {
  std::vector<float> scores, gates;
  std::vector<int32_t> sel;
};

RouteOut route(const std::vector<float> &logits, const float *bias, int64_t R, int E, int K, int normalize,
               float scale) {
  drl_device dev = cpu_device();
  RouteOut o;
  o.scores.assign((size_t)R * E, -1.0f);
  o.gates.assign((size_t)R * K, -1.0f);
  o.sel.assign((size_t)R * K, -1);
  EXPECT_EQ(drl_moe_route(&dev, o.scores.data(), o.sel.data(), o.gates.data(), logits.data(), bias, R, E, K,
                          normalize, scale),
            DRL_OK)
      << last_error();
  return o;
}

// Central differences of f with respect to every x_j, in double precision.
std::vector<double> fd_grad(std::vector<double> x, const std::function<double(const std::vector<double> &)> &f,
                            double h = 1e-5) {
  std::vector<double> g(x.size());
  for (size_t j = 0; j < x.size(); ++j) {
    double keep = x[j];
    x[j] = keep + h;
    double up = f(x);
    x[j] = keep - h;
    double dn = f(x);
    x[j] = keep;
    g[j] = (up - dn) / (2 * h);
  }
  return g;
}


// Logits whose sigmoid scores are well separated inside each row (a shuffled ladder with steps of 0.15 plus jitter),
// so no rounding can reorder them.
std::vector<float> ladder_logits(int64_t R, int E, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> jit(-0.03f, 0.03f);
  std::vector<float> v((size_t)R * E);
  std::vector<int> perm(E);
  for (int64_t r = 0; r < R; ++r) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), g);
    for (int e = 0; e < E; ++e) v[(size_t)r * E + e] = -2.0f + 0.15f * (float)perm[e] + jit(g);
  }
  return v;
}

}  // namespace

// ---------------- drl_expf, drl_sigmoid_exact ----------------

TEST(MoeExp, AccuracyAndMonotonicOnDenseSweeps) {
  // Every float of these intervals: both ends of the range, both sides of the first reduction boundaries (n = 0 <-> 1
  // at x = ln2/2), a large-n boundary, around 1 and near 0.
  const float ranges[][2] = {{-87.0f, -86.0f}, {87.0f, 88.0f},     {-0.35f, -0.34f},   {0.34f, 0.35f},
                             {1.0f, 1.0625f},  {44.0f, 44.5f},     {-44.5f, -44.0f},   {0x1p-12f, 0x1.1p-12f},
                             {-0x1.1p-12f, -0x1p-12f}};
  int64_t max_ulp = 0;
  float worst = 0.0f;
  size_t count = 0;
  for (auto &rg : ranges) {
    float prev = drl_expf(rg[0]);
    for (float x = rg[0]; x <= rg[1]; x = std::nextafterf(x, INFINITY), ++count) {
      float got = drl_expf(x), want = (float)std::exp((double)x);
      int64_t d = ulp_diff(got, want);
      if (d > max_ulp) max_ulp = d, worst = x;
      ASSERT_GE(got, prev) << "drl_expf decreases at x = " << x;
      prev = got;
    }
  }
  std::mt19937 g(7);
  std::uniform_real_distribution<float> u(-87.0f, 88.0f);
  for (int i = 0; i < 1000000; ++i, ++count) {
    float x = u(g);
    int64_t d = ulp_diff(drl_expf(x), (float)std::exp((double)x));
    if (d > max_ulp) max_ulp = d, worst = x;
  }
  std::printf("drl_expf: max error %lld ulp vs (float)exp((double)x) over %zu inputs (worst x = %a)\n",
              (long long)max_ulp, count, worst);
  RecordProperty("expf_max_ulp", (int)max_ulp);
  EXPECT_LE(max_ulp, 2) << "at x = " << worst;
}

TEST(MoeExp, ExactValuesClampAndNaN) {
  EXPECT_EQ(drl_expf(0.0f), 1.0f);
  EXPECT_EQ(drl_expf(-0.0f), 1.0f);
  EXPECT_EQ(drl_expf(1.0f), (float)std::exp(1.0));
  // Clamped to [-87.3, 88.7]: the ends are normal and finite, never 0 or inf.
  for (float x : {-88.0f, -100.0f, -1e30f, -INFINITY}) EXPECT_EQ(bits(drl_expf(x)), bits(drl_expf(-87.3f))) << x;
  for (float x : {89.0f, 100.0f, 1e30f, INFINITY}) EXPECT_EQ(bits(drl_expf(x)), bits(drl_expf(88.7f))) << x;
  EXPECT_GE(drl_expf(-87.3f), FLT_MIN);
  EXPECT_LE(ulp_diff(drl_expf(-87.3f), (float)std::exp((double)-87.3f)), 2);
  EXPECT_TRUE(std::isfinite(drl_expf(88.7f)));
  EXPECT_LE(ulp_diff(drl_expf(88.7f), (float)std::exp((double)88.7f)), 2);
  EXPECT_TRUE(std::isnan(drl_expf(NAN)));
}

TEST(MoeSigmoid, AccuracyMonotonicAndSaturation) {
  EXPECT_EQ(drl_sigmoid_exact(0.0f), 0.5f);
  EXPECT_EQ(drl_sigmoid_exact(-0.0f), 0.5f);
  int64_t max_ulp = 0;
  float prev = 0.0f, worst = 0.0f;
  for (int i = -1000000; i <= 1000000; ++i) {  // [-100, 100] in steps of 1e-4
    float z = (float)i * 1e-4f;
    float s = drl_sigmoid_exact(z);
    ASSERT_GE(s, prev) << "sigmoid decreases at z = " << z;
    ASSERT_GT(s, 0.0f);
    ASSERT_LE(s, 1.0f);
    prev = s;
    if (z < -87.0f) continue;  // beyond, the clamp of e^-z saturates it (below)
    int64_t d = ulp_diff(s, (float)sigmoid_d((double)z));
    if (d > max_ulp) max_ulp = d, worst = z;
  }
  for (auto rg : {std::make_pair(-3.0f, -2.99f), std::make_pair(0.5f, 0.501f), std::make_pair(-60.0f, -59.99f)}) {
    prev = drl_sigmoid_exact(rg.first);
    for (float z = rg.first; z <= rg.second; z = std::nextafterf(z, INFINITY)) {
      float s = drl_sigmoid_exact(z);
      ASSERT_GE(s, prev) << "sigmoid decreases at z = " << z;
      prev = s;
      int64_t d = ulp_diff(s, (float)sigmoid_d((double)z));
      if (d > max_ulp) max_ulp = d, worst = z;
    }
  }
  std::printf("drl_sigmoid_exact: max error %lld ulp vs the double sigmoid (worst z = %a)\n", (long long)max_ulp, worst);
  EXPECT_LE(max_ulp, 3) << "at z = " << worst;
  // Saturation: exactly 1 once e^-z is below half an ulp of 1; tiny but positive and finite at the far left.
  EXPECT_EQ(drl_sigmoid_exact(17.0f), 1.0f);
  EXPECT_EQ(drl_sigmoid_exact(1e30f), 1.0f);
  EXPECT_EQ(drl_sigmoid_exact(INFINITY), 1.0f);
  EXPECT_LT(drl_sigmoid_exact(16.0f), 1.0f);
  for (float z : {-90.0f, -1000.0f, -INFINITY}) {
    float s = drl_sigmoid_exact(z);
    EXPECT_GT(s, 0.0f) << z;
    EXPECT_LT(s, 1e-38f) << z;
    EXPECT_EQ(bits(s), bits(drl_sigmoid_exact(-88.7f))) << z;  // the clamp of e^-z
  }
  EXPECT_TRUE(std::isnan(drl_sigmoid_exact(NAN)));
}

// ---------------- route ----------------

TEST(MoeRoute, MatchesNaiveReference) {
  const int64_t R = 300;
  for (auto ek : {std::make_pair(8, 2), std::make_pair(16, 6), std::make_pair(64, 8), std::make_pair(5, 5),
                  std::make_pair(7, 1), std::make_pair(256, 8), std::make_pair(1, 1)}) {
    int E = ek.first, K = ek.second;
    auto logits = random_normal((size_t)R * E, 2.0f, 11 + E);
    auto bias = random_uniform(E, 12 + K, -0.2f, 0.2f);
    for (int normalize : {0, 1})
      for (int with_bias : {0, 1}) {
        const float scale = 2.5f;
        const float *b = with_bias ? bias.data() : nullptr;
        RouteOut o = route(logits, b, R, E, K, normalize, scale);
        for (int64_t r = 0; r < R; ++r) {
          std::vector<double> sd(E);
          for (int e = 0; e < E; ++e) {
            float z = logits[r * E + e];
            ASSERT_EQ(bits(o.scores[r * E + e]), bits(drl_sigmoid_exact(z)));
            sd[e] = sigmoid_d(z);
          }
          auto want = ref_select(&o.scores[r * E], b, E, K);
          for (int k = 0; k < K; ++k)
            ASSERT_EQ(o.sel[r * K + k], want[k]) << "E " << E << " K " << K << " row " << r << " k " << k;
          auto g = ref_gates(sd, want.data(), K, normalize, scale);
          for (int k = 0; k < K; ++k)
            EXPECT_NEAR(o.gates[r * K + k], g[k], 1e-6 * std::fabs(g[k]))
                << "E " << E << " K " << K << " normalize " << normalize << " row " << r << " k " << k;
          // And bit for bit the float formula: the selected scores summed in ascending expert order, + 1e-20f,
          // divided, times the scale last.
          std::vector<int32_t> by_expert(want);
          std::sort(by_expert.begin(), by_expert.end());
          float denom = 0.0f;
          for (int32_t e : by_expert) denom = denom + o.scores[r * E + e];
          denom = denom + 1e-20f;
          for (int k = 0; k < K; ++k) {
            float v = o.scores[r * E + want[k]];
            volatile float q = normalize ? v / denom : v;
            ASSERT_EQ(bits(o.gates[r * K + k]), bits(q * scale)) << "E " << E << " K " << K << " row " << r;
          }
        }
        if (normalize && K > 0) {  // the normalised gates of a token sum to the scale
          for (int64_t r = 0; r < R; ++r) {
            double s = 0.0;
            for (int k = 0; k < K; ++k) s += o.gates[r * K + k];
            EXPECT_NEAR(s, scale, 1e-5);
          }
        }
      }
  }
}

TEST(MoeRoute, NormalisationFloorForTinyScores) {
  // Logits near -60: scores ~ 1e-26, far below the 1e-20 floor of the normaliser, so the gates are ~ s / 1e-20.
  const int E = 6, K = 3;
  std::vector<float> logits = {-60.0f, -59.0f, -61.0f, -58.5f, -62.0f, -60.5f};
  RouteOut o = route(logits, nullptr, 1, E, K, 1, 1.0f);
  EXPECT_EQ(o.sel, (std::vector<int32_t>{3, 1, 0}));
  std::vector<double> sd(E);
  for (int e = 0; e < E; ++e) sd[e] = sigmoid_d(logits[e]);
  auto g = ref_gates(sd, o.sel.data(), K, 1, 1.0);
  for (int k = 0; k < K; ++k) {
    EXPECT_NEAR(o.gates[k], g[k], 1e-6 * g[k]) << k;
    EXPECT_LT(o.gates[k], 1e-4f) << "the floor must dominate";
  }
}

TEST(MoeRoute, KEqualsEIsAFullDescendingPermutation) {
  const int E = 12, R = 50;
  auto logits = random_normal((size_t)R * E, 3.0f, 5);
  RouteOut o = route(logits, nullptr, R, E, E, 1, 1.0f);
  for (int r = 0; r < R; ++r) {
    std::vector<int32_t> s(o.sel.begin() + r * E, o.sel.begin() + (r + 1) * E);
    for (int k = 1; k < E; ++k) EXPECT_GE(o.scores[r * E + s[k - 1]], o.scores[r * E + s[k]]);
    std::sort(s.begin(), s.end());
    for (int e = 0; e < E; ++e) EXPECT_EQ(s[e], e);
  }
}

TEST(MoeRoute, TiesGoToTheLowerExpertIndex) {
  const int E = 8;
  // All equal: experts 0..K-1 in index order.
  for (int K : {1, 3, 8}) {
    std::vector<float> logits(E, 0.7f);
    RouteOut o = route(logits, nullptr, 1, E, K, 1, 1.0f);
    for (int k = 0; k < K; ++k) EXPECT_EQ(o.sel[k], k) << "K " << K;
  }
  // A tie straddling the K-th place: experts 1, 4, 6 share the top score; K = 2 takes 1 and 4, K = 4 adds the best of
  // the rest (5), then 2 and 7 tie for the next place.
  {
    std::vector<float> logits = {-1.0f, 2.0f, 0.5f, -3.0f, 2.0f, 1.0f, 2.0f, 0.5f};
    RouteOut o2 = route(logits, nullptr, 1, E, 2, 0, 1.0f);
    EXPECT_EQ(o2.sel, (std::vector<int32_t>{1, 4}));
    RouteOut o5 = route(logits, nullptr, 1, E, 5, 0, 1.0f);
    EXPECT_EQ(o5.sel, (std::vector<int32_t>{1, 4, 6, 5, 2}));
    RouteOut o6 = route(logits, nullptr, 1, E, 6, 0, 1.0f);
    EXPECT_EQ(o6.sel, (std::vector<int32_t>{1, 4, 6, 5, 2, 7}));
  }
  // Ties made by the bias between different unbiased scores: b = -s gives every such expert the biased score 0
  // exactly; the lower indices win, and the gates still carry each one's own unbiased score.
  {
    std::vector<float> logits = {0.3f, -0.4f, 1.2f, 0.9f, -1.5f, 2.0f, 0.1f, -0.2f};
    RouteOut plain = route(logits, nullptr, 1, E, E, 0, 1.0f);
    std::vector<float> bias(E);
    const int tied[] = {1, 3, 5, 6};
    for (int e = 0; e < E; ++e) bias[e] = -plain.scores[e] - 1.0f;  // the others: biased score -1
    for (int e : tied) bias[e] = -plain.scores[e];
    RouteOut o = route(logits, bias.data(), 1, E, 3, 0, 2.0f);
    EXPECT_EQ(o.sel, (std::vector<int32_t>{1, 3, 5}));
    for (int k = 0; k < 3; ++k) EXPECT_EQ(bits(o.gates[k]), bits(plain.scores[o.sel[k]] * 2.0f));
  }
}

TEST(MoeRoute, BiasMovesOnlyTheSelection) {
  // Many tokens over one bias: where the selected SET is the same with and without the bias (often in another
  // order), every selected expert's gate has the same bits; elsewhere the bias changed the selection.
  const int E = 8, K = 4;
  const int64_t R = 4000;
  auto logits = random_normal((size_t)R * E, 1.5f, 21);
  std::vector<float> bias = {0.05f, -0.04f, 0.12f, 0.0f, -0.1f, 0.07f, 0.02f, -0.06f};
  for (int normalize : {0, 1}) {
    RouteOut a = route(logits, nullptr, R, E, K, normalize, 2.5f), b = route(logits, bias.data(), R, E, K, normalize,
                                                                             2.5f);
    EXPECT_TRUE(same_bits(a.scores, b.scores));
    int same_set_reordered = 0, changed = 0;
    for (int64_t r = 0; r < R; ++r) {
      std::vector<int32_t> sa(a.sel.begin() + r * K, a.sel.begin() + (r + 1) * K),
          sb(b.sel.begin() + r * K, b.sel.begin() + (r + 1) * K);
      std::vector<int32_t> ua = sa, ub = sb;
      std::sort(ua.begin(), ua.end());
      std::sort(ub.begin(), ub.end());
      if (ua != ub) {
        ++changed;
        continue;
      }
      if (sa != sb) ++same_set_reordered;
      for (int i = 0; i < K; ++i) {
        int j = (int)(std::find(sb.begin(), sb.end(), sa[i]) - sb.begin());
        EXPECT_EQ(bits(a.gates[r * K + i]), bits(b.gates[r * K + j]))
            << "row " << r << " expert " << sa[i] << " normalize " << normalize;
      }
    }
    // The construction must exercise both cases.
    EXPECT_GT(same_set_reordered, 200);
    EXPECT_GT(changed, 200);
  }
}

TEST(MoeRoute, NullBiasEqualsZeros) {
  const int E = 16, K = 4;
  const int64_t R = 200;
  auto logits = random_normal((size_t)R * E, 2.0f, 3);
  std::vector<float> zeros(E, 0.0f);
  for (int normalize : {0, 1}) {
    RouteOut a = route(logits, nullptr, R, E, K, normalize, 1.5f), b = route(logits, zeros.data(), R, E, K,
                                                                             normalize, 1.5f);
    EXPECT_TRUE(same_bits(a.scores, b.scores));
    EXPECT_TRUE(same_bits(a.sel, b.sel));
    EXPECT_TRUE(same_bits(a.gates, b.gates));
  }
}

TEST(MoeRoute, NormalizeOffIsScaledScoreAndK1NormalizedIsTheScale) {
  const int E = 6;
  auto logits = random_normal(10 * E, 1.0f, 8);
  RouteOut o = route(logits, nullptr, 10, E, 3, 0, 2.5f);
  for (int r = 0; r < 10; ++r)
    for (int k = 0; k < 3; ++k) EXPECT_EQ(bits(o.gates[r * 3 + k]), bits(o.scores[r * E + o.sel[r * 3 + k]] * 2.5f));
  RouteOut o1 = route(logits, nullptr, 10, E, 1, 1, 2.5f);
  for (int r = 0; r < 10; ++r) EXPECT_FLOAT_EQ(o1.gates[r], 2.5f);
}

// ---------------- route backward ----------------

namespace {

// L = sum_rk rw_rk gates(logits)[r,k] + sum_{r in mask} sum_i aux_i s_hat[r,i], in double, the selection fixed.
double ref_route_loss(const std::vector<double> &logits, const std::vector<int32_t> &sel,
                      const std::vector<float> &rw, int64_t R, int E, int K, int normalize, double scale,
                      const std::vector<float> *aux, const std::vector<uint8_t> *mask) {
  double L = 0.0;
  for (int64_t r = 0; r < R; ++r) {
    std::vector<double> s(E);
    double tot = 0.0;
    for (int e = 0; e < E; ++e) tot += s[e] = sigmoid_d(logits[r * E + e]);
    auto g = ref_gates(s, &sel[r * K], K, normalize, scale);
    for (int k = 0; k < K; ++k) L += rw[r * K + k] * g[k];
    if (aux && (!mask || (*mask)[r]))
      for (int e = 0; e < E; ++e) L += (*aux)[e] * s[e] / tot;
  }
  return L;
}

std::vector<float> route_backward(const RouteOut &o, const std::vector<float> &dgates, int64_t R, int E, int K,
                                  int normalize, float scale, const float *aux, const uint8_t *mask) {
  drl_device dev = cpu_device();
  std::vector<float> dl((size_t)R * E, 123.0f);  // overwritten
  EXPECT_EQ(drl_moe_route_backward(&dev, dl.data(), dgates.data(), o.scores.data(), o.sel.data(), R, E, K, normalize,
                                   scale, aux, mask),
            DRL_OK)
      << last_error();
  return dl;
}

}  // namespace

TEST(MoeRouteBackward, MatchesFiniteDifferences) {
  const int64_t R = 6;
  for (auto ek : {std::make_pair(8, 2), std::make_pair(6, 3), std::make_pair(5, 5), std::make_pair(7, 1)}) {
    const int E = ek.first, K = ek.second;
    auto logits = ladder_logits(R, E, 40 + E);
    auto rw = random_uniform((size_t)R * K, 41 + K);
    auto aux = random_uniform(E, 42, -2.0f, 2.0f);
    std::vector<uint8_t> mask = {1, 0, 1, 1, 0, 1};
    std::vector<double> ld(logits.begin(), logits.end());
    const float scale = 2.5f;
    for (int normalize : {0, 1})
      for (int aux_mode : {0, 1, 2}) {  // none, aux on all rows, aux on the masked rows
        RouteOut o = route(logits, nullptr, R, E, K, normalize, scale);
        const std::vector<float> *ap = aux_mode ? &aux : nullptr;
        const std::vector<uint8_t> *mp = aux_mode == 2 ? &mask : nullptr;
        auto got = route_backward(o, rw, R, E, K, normalize, scale, ap ? ap->data() : nullptr,
                                  mp ? mp->data() : nullptr);
        auto fd = fd_grad(ld, [&](const std::vector<double> &x) {
          return ref_route_loss(x, o.sel, rw, R, E, K, normalize, scale, ap, mp);
        });
        if (K == 1 && normalize && !aux_mode) {  // a single normalised gate is the constant scale: no gradient
          for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(std::fabs(got[i]), 1e-6) << i;
          continue;
        }
        char what[96];
        std::snprintf(what, sizeof what, "dlogits E %d K %d normalize %d aux %d", E, K, normalize, aux_mode);
        expect_grad_close(got, fd, what);
      }
  }
}

TEST(MoeRouteBackward, NoGradientReachesUnselectedExpertsWithoutAux) {
  const int E = 16, K = 4;
  const int64_t R = 64;
  auto logits = random_normal((size_t)R * E, 2.0f, 50);
  auto dg = random_normal((size_t)R * K, 1.0f, 51);
  auto aux = random_uniform(E, 52, -1.0f, 1.0f);
  std::vector<uint8_t> mask(R);
  for (int64_t r = 0; r < R; ++r) mask[r] = (uint8_t)(r % 3 == 0);
  for (int normalize : {0, 1}) {
    RouteOut o = route(logits, nullptr, R, E, K, normalize, 1.0f);
    auto none = route_backward(o, dg, R, E, K, normalize, 1.0f, nullptr, nullptr);
    auto masked = route_backward(o, dg, R, E, K, normalize, 1.0f, aux.data(), mask.data());
    for (int64_t r = 0; r < R; ++r) {
      std::vector<bool> chosen(E, false);
      for (int k = 0; k < K; ++k) chosen[o.sel[r * K + k]] = true;
      int nonzero_unselected = 0;
      for (int e = 0; e < E; ++e) {
        if (chosen[e]) {
          EXPECT_NE(none[r * E + e], 0.0f) << "row " << r << " expert " << e;
          continue;
        }
        EXPECT_EQ(bits(none[r * E + e]), 0u) << "no aux: row " << r << " expert " << e;
        if (!mask[r]) {
          EXPECT_EQ(bits(masked[r * E + e]), 0u) << "masked-out row " << r << " expert " << e;
        }
        nonzero_unselected += masked[r * E + e] != 0.0f;
      }
      if (mask[r]) {
        EXPECT_EQ(nonzero_unselected, E - K) << "aux row " << r;
      } else {  // a masked-out row is exactly the no-aux row
        for (int e = 0; e < E; ++e) EXPECT_EQ(bits(masked[r * E + e]), bits(none[r * E + e]));
      }
    }
  }
}

// ---------------- dispatch ----------------

namespace {

struct Dispatch {
  std::vector<int32_t> order, slot;
  std::vector<int64_t> offsets;
};

Dispatch dispatch(const std::vector<int32_t> &sel, int64_t R, int K, int E) {
  drl_device dev = cpu_device();
  Dispatch d;
  d.order.assign((size_t)R * K, -7);
  d.slot.assign((size_t)R * K, -7);
  d.offsets.assign((size_t)E + 1, -7);
  EXPECT_EQ(drl_moe_dispatch_scratch_bytes(&dev, R, K, E), 0);
  EXPECT_EQ(drl_moe_dispatch(&dev, d.order.data(), d.slot.data(), d.offsets.data(), sel.data(), R, K, E, nullptr),
            DRL_OK)
      << last_error();
  return d;
}

void expect_dispatch_matches(const Dispatch &d, const std::vector<int32_t> &sel, int64_t R, int K, int E) {
  const int64_t n = R * K;
  std::vector<int32_t> want(n);
  std::iota(want.begin(), want.end(), 0);
  std::stable_sort(want.begin(), want.end(), [&](int32_t a, int32_t b) { return sel[a] < sel[b]; });
  EXPECT_EQ(d.order, want);
  for (int64_t p = 0; p < n; ++p) EXPECT_EQ(d.slot[d.order[p]], p);
  for (int64_t a = 0; a < n; ++a) EXPECT_EQ(d.order[d.slot[a]], a);
  ASSERT_EQ((int64_t)d.offsets.size(), E + 1);
  EXPECT_EQ(d.offsets[0], 0);
  EXPECT_EQ(d.offsets[E], n);
  for (int e = 0; e < E; ++e) {
    int64_t cnt = std::count(sel.begin(), sel.end(), e);
    EXPECT_EQ(d.offsets[e + 1] - d.offsets[e], cnt) << "expert " << e;
    for (int64_t p = d.offsets[e]; p < d.offsets[e + 1]; ++p) EXPECT_EQ(sel[d.order[p]], e);
  }
}

}  // namespace

TEST(MoeDispatch, MatchesStableSortWithEmptyExperts) {
  const int64_t R = 500;
  const int K = 3, E = 16;
  std::mt19937 g(60);
  // Experts 0, 7 and 15 get nothing; the others very unevenly much.
  std::vector<int> used = {1, 2, 2, 2, 3, 4, 5, 5, 5, 5, 6, 8, 9, 10, 11, 12, 13, 14};
  std::uniform_int_distribution<size_t> pick(0, used.size() - 1);
  std::vector<int32_t> sel((size_t)R * K);
  for (auto &s : sel) s = used[pick(g)];
  Dispatch d = dispatch(sel, R, K, E);
  expect_dispatch_matches(d, sel, R, K, E);
  EXPECT_EQ(d.offsets[1] - d.offsets[0], 0);
  EXPECT_EQ(d.offsets[8] - d.offsets[7], 0);
  EXPECT_EQ(d.offsets[16] - d.offsets[15], 0);
}

TEST(MoeDispatch, RoutedSelectionOneExpertAndNoTokens) {
  const int64_t R = 257;
  RouteOut o = route(random_normal((size_t)R * 64, 1.0f, 61), nullptr, R, 64, 6, 1, 1.0f);
  expect_dispatch_matches(dispatch(o.sel, R, 6, 64), o.sel, R, 6, 64);
  // E = 1: the identity packing.
  std::vector<int32_t> one((size_t)R * 2, 0);
  Dispatch d1 = dispatch(one, R, 2, 1);
  expect_dispatch_matches(d1, one, R, 2, 1);
  for (int64_t a = 0; a < R * 2; ++a) EXPECT_EQ(d1.order[a], a);
  // R = 0: offsets all zero, nothing else touched.
  Dispatch d0 = dispatch({}, 0, 2, 5);
  EXPECT_EQ(d0.offsets, std::vector<int64_t>(6, 0));
}

// ---------------- gather, combine, combine_backward ----------------

namespace {

// A dispatch of random top-K selections (distinct experts per token), as the layer makes it.
Dispatch random_dispatch(int64_t R, int K, int E, uint32_t seed, std::vector<int32_t> *sel_out = nullptr) {
  RouteOut o = route(random_normal((size_t)R * E, 2.0f, seed), nullptr, R, E, K, 1, 1.0f);
  if (sel_out) *sel_out = o.sel;
  return dispatch(o.sel, R, K, E);
}

std::vector<float> naive_combine(std::vector<float> out, const std::vector<float> &y, const std::vector<int32_t> &slot,
                                 const float *w, int64_t R, int K, int C) {
  for (int64_t r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float acc = 0.0f;
      for (int k = 0; k < K; ++k) {
        volatile float t = w ? w[r * K + k] * y[(size_t)slot[r * K + k] * C + c] : y[(size_t)slot[r * K + k] * C + c];
        acc = acc + t;
      }
      out[r * C + c] = out[r * C + c] + acc;
    }
  return out;
}

}  // namespace

TEST(MoeGather, MatchesNaiveLoop) {
  const int64_t R = 77;
  const int K = 3, E = 8, C = 19;
  Dispatch d = random_dispatch(R, K, E, 70);
  auto in = random_uniform((size_t)R * C, 71);
  std::vector<float> out((size_t)R * K * C, -1.0f);
  drl_device dev = cpu_device();
  ASSERT_EQ(drl_moe_gather(&dev, out.data(), in.data(), d.order.data(), R, K, C), DRL_OK) << last_error();
  for (int64_t p = 0; p < R * K; ++p)
    for (int c = 0; c < C; ++c) ASSERT_EQ(bits(out[p * C + c]), bits(in[(d.order[p] / K) * C + c]));
}

TEST(MoeCombine, BitExactToNaiveLoopWithAndWithoutWeights) {
  const int64_t R = 90;
  const int K = 4, E = 8, C = 33;
  Dispatch d = random_dispatch(R, K, E, 80);
  auto y = mixed_values((size_t)R * K * C, 81, 10);
  auto w = random_uniform((size_t)R * K, 82);
  auto out0 = mixed_values((size_t)R * C, 83, 10);  // += semantics
  drl_device dev = cpu_device();
  for (const float *wp : {(const float *)w.data(), (const float *)nullptr}) {
    auto out = out0;
    ASSERT_EQ(drl_moe_combine(&dev, out.data(), y.data(), d.slot.data(), wp, R, K, C), DRL_OK) << last_error();
    EXPECT_TRUE(same_bits(out, naive_combine(out0, y, d.slot, wp, R, K, C))) << (wp ? "weighted" : "plain");
  }
  // Unweighted combine is the backward of gather: <gather(x), g> = <x, combine(g)>.
  auto x = random_uniform((size_t)R * C, 84);
  auto gp = random_uniform((size_t)R * K * C, 85);
  std::vector<float> gx((size_t)R * K * C), cx((size_t)R * C, 0.0f);
  ASSERT_EQ(drl_moe_gather(&dev, gx.data(), x.data(), d.order.data(), R, K, C), DRL_OK);
  ASSERT_EQ(drl_moe_combine(&dev, cx.data(), gp.data(), d.slot.data(), nullptr, R, K, C), DRL_OK);
  double lhs = 0.0, rhs = 0.0;
  for (size_t i = 0; i < gx.size(); ++i) lhs += (double)gx[i] * gp[i];
  for (size_t i = 0; i < cx.size(); ++i) rhs += (double)x[i] * cx[i];
  EXPECT_NEAR(lhs, rhs, 1e-4 * std::fabs(lhs) + 1e-6);
}

TEST(MoeCombineBackward, BitExactToNaiveLoopAndFiniteDifferences) {
  const int64_t R = 40;
  const int K = 3, E = 6, C = 24;
  Dispatch d = random_dispatch(R, K, E, 90);
  auto y = mixed_values((size_t)R * K * C, 91, 10);
  auto w = random_uniform((size_t)R * K, 92);
  auto dout = mixed_values((size_t)R * C, 93, 10);
  drl_device dev = cpu_device();
  std::vector<float> dy((size_t)R * K * C, 99.0f), dw((size_t)R * K, 99.0f);
  ASSERT_EQ(drl_moe_combine_backward(&dev, dy.data(), dw.data(), dout.data(), y.data(), d.slot.data(), w.data(), R, K,
                                     C),
            DRL_OK)
      << last_error();
  // The same order: dw summed over c ascending in double, rounded once.
  std::vector<float> ndy(dy.size()), ndw(dw.size());
  for (int64_t r = 0; r < R; ++r)
    for (int k = 0; k < K; ++k) {
      int64_t a = r * K + k, p = d.slot[a];
      double acc = 0.0;
      for (int c = 0; c < C; ++c) {
        ndy[p * C + c] = w[a] * dout[r * C + c];
        acc += (double)dout[r * C + c] * (double)y[p * C + c];
      }
      ndw[a] = (float)acc;
    }
  EXPECT_TRUE(same_bits(dy, ndy));
  EXPECT_TRUE(same_bits(dw, ndw));
  // Finite differences of L = sum dout * combine(w, y).
  auto loss = [&](const std::vector<double> &wd, const std::vector<double> &yd) {
    double L = 0.0;
    for (int64_t r = 0; r < R; ++r)
      for (int c = 0; c < C; ++c) {
        double s = 0.0;
        for (int k = 0; k < K; ++k) s += wd[r * K + k] * yd[(size_t)d.slot[r * K + k] * C + c];
        L += dout[r * C + c] * s;
      }
    return L;
  };
  std::vector<double> wd(w.begin(), w.end()), yd(y.begin(), y.end());
  expect_grad_close(dw, fd_grad(wd, [&](const std::vector<double> &x) { return loss(x, yd); }, 1e-3), "dw");
  expect_grad_close(dy, fd_grad(yd, [&](const std::vector<double> &x) { return loss(wd, x); }, 1e-3), "dy");
}

TEST(MoeCombineBackward, DwSumsChannelsAscendingInDouble) {
  // Row 0: (1 + 2^-30) - 1 is 2^-30 in double, 0 in float. Row 1: (2^60 - 2^60) + 1 = 1 ascending, but
  // (1 - 2^60) + 2^60 = 0 descending (and 0 in any order that adds 1 before both big terms cancel).
  drl_device dev = cpu_device();
  const int C = 3;
  std::vector<float> dout = {1.0f, 1.0f, 1.0f, 0x1p30f, 0x1p30f, 1.0f};
  std::vector<float> y = {1.0f, 0x1p-30f, -1.0f, 0x1p30f, -0x1p30f, 1.0f};
  std::vector<int32_t> slot = {0, 1};
  std::vector<float> w = {1.0f, 1.0f}, dy(6), dw(2);
  ASSERT_EQ(drl_moe_combine_backward(&dev, dy.data(), dw.data(), dout.data(), y.data(), slot.data(), w.data(), 2, 1, C),
            DRL_OK)
      << last_error();
  EXPECT_EQ(dw[0], 0x1p-30f);
  EXPECT_EQ(dw[1], 1.0f);
}

TEST(MoeCombineBackward, ZeroChannelsStillWritesDw) {
  drl_device dev = cpu_device();
  std::vector<int32_t> slot = {1, 0, 2, 3};
  std::vector<float> w = {1, 2, 3, 4}, dw(4, 5.0f);
  ASSERT_EQ(drl_moe_combine_backward(&dev, nullptr, dw.data(), nullptr, nullptr, slot.data(), w.data(), 2, 2, 0),
            DRL_OK)
      << last_error();
  EXPECT_EQ(dw, std::vector<float>(4, 0.0f));
}

// ---------------- thread-count independence ----------------

TEST(MoeKernels, ThreadCountIndependent) {
  const int64_t R = 2048;
  const int E = 16, K = 4, C = 64;
  auto logits = random_normal((size_t)R * E, 2.0f, 100);
  auto bias = random_uniform(E, 101, -0.1f, 0.1f);
  auto dg = random_normal((size_t)R * K, 1.0f, 102);
  auto aux = random_uniform(E, 103);
  auto y = mixed_values((size_t)R * K * C, 104, 10);
  auto dout = mixed_values((size_t)R * C, 105, 10);
  auto run = [&](int threads) {
    std::vector<std::vector<float>> f;
    std::vector<int32_t> sel;
    with_threads(threads, [&] {
      RouteOut o = route(logits, bias.data(), R, E, K, 1, 2.5f);
      auto dl = route_backward(o, dg, R, E, K, 1, 2.5f, aux.data(), nullptr);
      Dispatch d = dispatch(o.sel, R, K, E);
      drl_device dev = cpu_device();
      std::vector<float> out((size_t)R * C, 0.5f), dy((size_t)R * K * C), dw((size_t)R * K);
      EXPECT_EQ(drl_moe_combine(&dev, out.data(), y.data(), d.slot.data(), o.gates.data(), R, K, C), DRL_OK);
      EXPECT_EQ(drl_moe_combine_backward(&dev, dy.data(), dw.data(), dout.data(), y.data(), d.slot.data(),
                                         o.gates.data(), R, K, C),
                DRL_OK);
      f = {o.scores, o.gates, dl, out, dy, dw};
      sel = o.sel;
    });
    return std::make_pair(f, sel);
  };
  auto one = run(1), two = run(2);
  EXPECT_TRUE(same_bits(one.second, two.second)) << "sel";
  const char *names[] = {"scores", "gates", "dlogits", "combine", "dy", "dw"};
  for (size_t i = 0; i < one.first.size(); ++i) EXPECT_TRUE(same_bits(one.first[i], two.first[i])) << names[i];
}

// ---------------- argument errors ----------------

TEST(MoeKernels, ArgumentErrors) {
  drl_device dev = cpu_device();
  std::vector<float> f(4096, 0.0f), g(4096, 0.0f);
  std::vector<int32_t> sel(512, 0), order(512), slot(512);
  std::vector<int64_t> off(300);
  float *x = f.data(), *z = g.data();
  int32_t *s = sel.data();

  EXPECT_EQ(drl_moe_route(&dev, x, s, z, x, nullptr, 2, 4, 5, 1, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("K=5");
  EXPECT_EQ(drl_moe_route(&dev, x, s, z, x, nullptr, 2, 4, 0, 1, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("K=0");
  EXPECT_EQ(drl_moe_route(&dev, x, s, z, x, nullptr, 2, 257, 2, 1, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("E=257");
  EXPECT_EQ(drl_moe_route(&dev, x, s, z, x, nullptr, -1, 4, 2, 1, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative");
  EXPECT_EQ(drl_moe_route(&dev, x, s, nullptr, x, nullptr, 2, 4, 2, 1, 1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("NULL");
  EXPECT_EQ(drl_moe_route(&dev, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 4, 2, 1, 1.0f), DRL_OK);

  EXPECT_EQ(drl_moe_route_backward(&dev, x, z, x, s, 2, 4, 5, 1, 1.0f, nullptr, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("K=5");
  EXPECT_EQ(drl_moe_route_backward(&dev, x, z, x, s, -3, 4, 2, 1, 1.0f, nullptr, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_moe_route_backward(&dev, x, nullptr, x, s, 2, 4, 2, 1, 1.0f, nullptr, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("NULL");
  sel[3] = 4;  // an expert id outside [0, E): reported, nothing written
  std::fill(f.begin(), f.end(), 7.0f);
  EXPECT_EQ(drl_moe_route_backward(&dev, x, z, z, s, 2, 4, 2, 1, 1.0f, nullptr, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("sel[3] = 4");
  EXPECT_EQ(f[0], 7.0f);

  EXPECT_EQ(drl_moe_dispatch(&dev, order.data(), slot.data(), off.data(), s, 2, 2, 4, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("sel[3] = 4");
  sel[3] = -1;
  EXPECT_EQ(drl_moe_dispatch(&dev, order.data(), slot.data(), off.data(), s, 2, 2, 4, nullptr), DRL_ERR_INVALID_ARG);
  sel[3] = 0;
  EXPECT_EQ(drl_moe_dispatch(&dev, order.data(), slot.data(), nullptr, s, 2, 2, 4, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("offsets");
  EXPECT_EQ(drl_moe_dispatch(&dev, order.data(), nullptr, off.data(), s, 2, 2, 4, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_moe_dispatch(&dev, order.data(), slot.data(), off.data(), s, -1, 2, 4, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_moe_dispatch(&dev, order.data(), slot.data(), off.data(), s, 2, 0, 4, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_moe_dispatch(&dev, order.data(), slot.data(), off.data(), s, 2, 2, 257, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_moe_dispatch(&dev, order.data(), slot.data(), off.data(), s, (int64_t)1 << 31, 2, 4, nullptr),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("int32");
  EXPECT_EQ(drl_moe_dispatch_scratch_bytes(&dev, -1, 2, 4), -1);
  EXPECT_EQ(drl_moe_dispatch(&dev, order.data(), slot.data(), off.data(), s, 2, 2, 4, nullptr), DRL_OK);

  // order / slot entries outside [0, R*K).
  std::vector<int32_t> bad = {0, 1, 2, 4};
  EXPECT_EQ(drl_moe_gather(&dev, x, z, bad.data(), 2, 2, 3), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("order[3] = 4");
  EXPECT_EQ(drl_moe_combine(&dev, x, z, bad.data(), nullptr, 2, 2, 3), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("slot[3] = 4");
  EXPECT_EQ(drl_moe_combine_backward(&dev, x, z, x, z, bad.data(), z, 2, 2, 3), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("slot[3] = 4");
  EXPECT_EQ(drl_moe_gather(&dev, nullptr, z, order.data(), 2, 2, 3), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_moe_gather(&dev, x, z, order.data(), 2, 2, -3), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_moe_combine(&dev, x, nullptr, slot.data(), nullptr, 2, 2, 3), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_moe_combine(&dev, x, z, slot.data(), nullptr, -2, 2, 3), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_moe_combine_backward(&dev, x, z, x, z, slot.data(), nullptr, 2, 2, 3), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("NULL");
  EXPECT_EQ(drl_moe_combine_backward(&dev, x, nullptr, x, z, slot.data(), z, 2, 2, 3), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_moe_combine_backward(&dev, x, z, x, z, slot.data(), z, 2, 0, 3), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("K=0");
}
