// RoPE and causal GQA attention on the CPU backend: against naive double-precision references, finite differences,
// causality and padding invariances, thread-count determinism, and the error cases.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>  // before the C headers: they include <math.h> inside extern "C"
#include <cstring>
#include <limits>
#include <vector>

#include "test_util.h"

extern "C" {
#include "kernels/attention.h"
#include "kernels/device.h"
#include "kernels/rope.h"
}

namespace {

std::vector<double> to_double(const std::vector<float> &x) { return std::vector<double>(x.begin(), x.end()); }

// ---------------------------------------------------------------- RoPE

// x [N, heads, D] rotated in double: pair (i, i + D/2) by pos * theta^(-2i/D), or by minus that when inverse.
std::vector<double> rope_naive(const std::vector<double> &x, const std::vector<int32_t> &pos, int heads, int D,
                               double theta, bool inverse = false) {
  std::vector<double> y(x);
  int half = D / 2, N = (int)pos.size();
  for (int n = 0; n < N; ++n)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < half; ++i) {
        double ang = pos[n] / std::pow(theta, 2.0 * i / D) * (inverse ? -1.0 : 1.0);
        size_t a = ((size_t)n * heads + h) * D + i, b = a + half;
        y[a] = x[a] * std::cos(ang) - x[b] * std::sin(ang);
        y[b] = x[b] * std::cos(ang) + x[a] * std::sin(ang);
      }
  return y;
}

struct RopeCase {
  int N = 6, heads = 3, D = 8, max_pos = 64;
  double theta = 10000.0;
  std::vector<int32_t> pos{0, 5, 63, 7, 7, 12};
  std::vector<float> cos_t, sin_t;
  RopeCase() {
    cos_t.resize((size_t)max_pos * D / 2);
    sin_t.resize(cos_t.size());
    drl_rope_tables(cos_t.data(), sin_t.data(), max_pos, D, theta);
  }
  size_t size() const { return (size_t)N * heads * D; }
};

TEST(Rope, TablesMatchCosSinInDouble) {
  for (double theta : {10000.0, 500000.0}) {
    const int max_pos = 300, D = 12, half = D / 2;
    std::vector<float> c((size_t)max_pos * half), s(c.size());
    drl_rope_tables(c.data(), s.data(), max_pos, D, theta);
    for (int p = 0; p < max_pos; ++p)
      for (int i = 0; i < half; ++i) {
        double ang = p / std::pow(theta, 2.0 * i / D);
        ASSERT_NEAR(c[(size_t)p * half + i], std::cos(ang), 1e-6) << "p=" << p << " i=" << i;
        ASSERT_NEAR(s[(size_t)p * half + i], std::sin(ang), 1e-6) << "p=" << p << " i=" << i;
        // rounded once from double: the nearest float
        ASSERT_EQ(c[(size_t)p * half + i], (float)std::cos(ang));
      }
    for (int i = 0; i < half; ++i) {
      EXPECT_EQ(c[i], 1.0f);
      EXPECT_EQ(s[i], 0.0f);
    }
  }
}

// Hugging Face's scaled inverse frequencies (transformers' rope_init functions) in double: "linear" divides every one
// by factor; "llama3" keeps wavelengths 2 pi / inv below orig / high, divides those above orig / low, and blends
// between. band[i] = 0 kept, 1 blended, 2 divided.
std::vector<double> scaled_inv_naive(int D, double theta, int type, double factor, double low, double high, double orig,
                                     std::vector<int> *band = nullptr) {
  std::vector<double> inv(D / 2);
  if (band) band->assign(D / 2, 0);
  for (int i = 0; i < D / 2; ++i) {
    double f = std::pow(theta, -2.0 * i / D);
    if (type == 1) f /= factor;
    if (type == 2) {
      double wl = 2 * 3.14159265358979323846 / f;
      if (wl > orig / low) {
        f /= factor;
        if (band) (*band)[i] = 2;
      } else if (wl >= orig / high) {
        double s = (orig / wl - low) / (high - low);
        f = (1 - s) * f / factor + s * f;
        if (band) (*band)[i] = 1;
      }
    }
    inv[i] = f;
  }
  return inv;
}

// The fp32 frequencies and tables of a scaled RoPE against the formula in double: each frequency to its handful of
// float roundings (2e-6 relative; a wrong band is off by up to the factor 4), each table entry to its angle's error
// (the frequency's times pos, plus the fp32 rounding of pos * inv, which HF rounds too).
void expect_scaled_tables(int type, float factor, int D, int max_pos, const std::vector<int> &want_bands) {
  const double theta = 10000.0;
  const float low = 1.0f, high = 4.0f;
  const int orig = 64, half = D / 2;
  std::vector<int> band;
  std::vector<double> want = scaled_inv_naive(D, theta, type, factor, low, high, orig, &band);
  if (!want_bands.empty()) {
    EXPECT_EQ(band, want_bands) << "the three llama3 bands";
  }
  std::vector<float> inv(half);
  drl_rope_inv_freq(inv.data(), D, theta);
  if (type == 1) drl_rope_scale_linear(inv.data(), half, factor);
  if (type == 2) drl_rope_scale_llama3(inv.data(), half, factor, low, high, orig);
  for (int i = 0; i < half; ++i) EXPECT_NEAR(inv[i], want[i], 2e-6 * want[i]) << "inv_freq[" << i << "]";
  std::vector<float> c((size_t)max_pos * half), s(c.size());
  drl_rope_tables_from_inv(c.data(), s.data(), max_pos, D, inv.data());
  for (int p = 0; p < max_pos; ++p)
    for (int i = 0; i < half; ++i) {
      double ang = p * want[i];
      double tol = 2e-6 * ang + std::ldexp(1.0, -23) * std::fmax(ang, 1.0) + 1e-7;
      ASSERT_NEAR(c[(size_t)p * half + i], std::cos(ang), tol) << "p=" << p << " i=" << i;
      ASSERT_NEAR(s[(size_t)p * half + i], std::sin(ang), tol) << "p=" << p << " i=" << i;
      float fang = (float)p * inv[i];
      ASSERT_EQ(c[(size_t)p * half + i], (float)std::cos((double)fang)) << "cos of the fp32 angle, rounded once";
    }
}

TEST(Rope, Llama3ScaledTablesMatchTheFormula) {
  // head_dim 16, theta 1e4, factor 4, low 1, high 4, original context 64: wavelengths 6.3 (kept), 19.9 and 62.8
  // (blended), 199 and up (divided).
  expect_scaled_tables(2, 4.0f, 16, 256, {0, 1, 1, 2, 2, 2, 2, 2});
}

TEST(Rope, LinearScaledTablesMatchTheFormula) { expect_scaled_tables(1, 4.0f, 16, 256, {}); }

// Unscaled, the fp32 (HF) frequencies give tables within an fp32 angle's rounding of the double-precision ones.
TEST(Rope, Fp32FrequenciesAgreeWithDoubleTables) {
  const int D = 12, half = D / 2, max_pos = 300;
  std::vector<float> inv(half), c((size_t)max_pos * half), s(c.size()), cd(c.size()), sd(c.size());
  drl_rope_inv_freq(inv.data(), D, 500000.0);
  drl_rope_tables_from_inv(c.data(), s.data(), max_pos, D, inv.data());
  drl_rope_tables(cd.data(), sd.data(), max_pos, D, 500000.0);
  EXPECT_EQ(inv[0], 1.0f);
  for (size_t e = 0; e < c.size(); ++e) {
    ASSERT_NEAR(c[e], cd[e], 5e-5) << e;
    ASSERT_NEAR(s[e], sd[e], 5e-5) << e;
  }
}

TEST(Rope, ForwardMatchesNaiveRotation) {
  drl_device dev = cpu_device();
  RopeCase rc;
  std::vector<float> x = random_uniform(rc.size(), 1);
  std::vector<double> want = rope_naive(to_double(x), rc.pos, rc.heads, rc.D, rc.theta);
  ASSERT_EQ(drl_rope_forward(&dev, x.data(), rc.pos.data(), rc.cos_t.data(), rc.sin_t.data(), rc.N, rc.heads, rc.D),
            DRL_OK)
      << last_error();
  for (size_t e = 0; e < x.size(); ++e) ASSERT_NEAR(x[e], want[e], 2e-6) << "element " << e;
  // position 0 is the identity
  std::vector<float> y = random_uniform(rc.size(), 2), y0 = y;
  std::vector<int32_t> zeros(rc.N, 0);
  ASSERT_EQ(drl_rope_forward(&dev, y.data(), zeros.data(), rc.cos_t.data(), rc.sin_t.data(), rc.N, rc.heads, rc.D),
            DRL_OK);
  EXPECT_EQ(y, y0);
}

TEST(Rope, BackwardInvertsForward) {
  drl_device dev = cpu_device();
  RopeCase rc;
  std::vector<float> x0 = random_uniform(rc.size(), 3), x = x0;
  ASSERT_EQ(drl_rope_forward(&dev, x.data(), rc.pos.data(), rc.cos_t.data(), rc.sin_t.data(), rc.N, rc.heads, rc.D),
            DRL_OK);
  EXPECT_NE(x, x0);
  ASSERT_EQ(drl_rope_backward(&dev, x.data(), rc.pos.data(), rc.cos_t.data(), rc.sin_t.data(), rc.N, rc.heads, rc.D),
            DRL_OK);
  for (size_t e = 0; e < x.size(); ++e) ASSERT_NEAR(x[e], x0[e], 1e-6) << "element " << e;
  // and it is the inverse rotation in double
  std::vector<double> inv = rope_naive(to_double(x0), rc.pos, rc.heads, rc.D, rc.theta, true);
  std::vector<float> g = x0;
  ASSERT_EQ(drl_rope_backward(&dev, g.data(), rc.pos.data(), rc.cos_t.data(), rc.sin_t.data(), rc.N, rc.heads, rc.D),
            DRL_OK);
  for (size_t e = 0; e < g.size(); ++e) ASSERT_NEAR(g[e], inv[e], 2e-6) << "element " << e;
}

TEST(Rope, BackwardMatchesFiniteDifferences) {
  drl_device dev = cpu_device();
  RopeCase rc;
  std::vector<float> x = random_uniform(rc.size(), 4), w = random_uniform(rc.size(), 5);
  // loss = sum w * rope(x); its gradient is rope_backward(w)
  std::vector<float> grad = w;
  ASSERT_EQ(drl_rope_backward(&dev, grad.data(), rc.pos.data(), rc.cos_t.data(), rc.sin_t.data(), rc.N, rc.heads,
                              rc.D),
            DRL_OK);
  auto loss = [&](const std::vector<double> &xd) {
    std::vector<double> y = rope_naive(xd, rc.pos, rc.heads, rc.D, rc.theta);
    double l = 0;
    for (size_t e = 0; e < y.size(); ++e) l += w[e] * y[e];
    return l;
  };
  std::vector<double> xd = to_double(x);
  const double eps = 1e-4;
  for (size_t e = 0; e < x.size(); ++e) {
    double keep = xd[e];
    xd[e] = keep + eps;
    double lp = loss(xd);
    xd[e] = keep - eps;
    double lm = loss(xd);
    xd[e] = keep;
    double fd = (lp - lm) / (2 * eps);
    ASSERT_LE(std::fabs(grad[e] - fd), 1e-3 * std::fmax(std::fabs(fd), 1e-2)) << "element " << e;
  }
}

TEST(Rope, Errors) {
  drl_device dev = cpu_device();
  RopeCase rc;
  std::vector<float> x = random_uniform(rc.size(), 6), x0 = x;
  drl_clear_error();
  EXPECT_EQ(drl_rope_forward(&dev, x.data(), rc.pos.data(), rc.cos_t.data(), rc.sin_t.data(), rc.N, rc.heads, 7),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("even D");
  EXPECT_EQ(drl_rope_backward(&dev, x.data(), rc.pos.data(), rc.cos_t.data(), rc.sin_t.data(), rc.N, rc.heads, 7),
            DRL_ERR_INVALID_ARG);
  std::vector<int32_t> bad = rc.pos;
  bad[4] = -1;
  EXPECT_EQ(drl_rope_forward(&dev, x.data(), bad.data(), rc.cos_t.data(), rc.sin_t.data(), rc.N, rc.heads, rc.D),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative position");
  EXPECT_EQ(x, x0) << "a rejected call leaves x untouched";
  EXPECT_EQ(drl_rope_forward(&dev, nullptr, rc.pos.data(), rc.cos_t.data(), rc.sin_t.data(), rc.N, rc.heads, rc.D),
            DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_rope_forward(&dev, nullptr, nullptr, nullptr, nullptr, 0, rc.heads, rc.D), DRL_OK) << "empty is fine";
}

// ---------------------------------------------------------------- attention

struct Shape {
  int B, T, H, KV, D;
  std::vector<int32_t> rs;  // empty: no padding (row_start = NULL)
  const int32_t *row_start() const { return rs.empty() ? nullptr : rs.data(); }
  int start(int b) const { return rs.empty() ? 0 : rs[b]; }
  size_t nq() const { return (size_t)B * T * H * D; }
  size_t nkv() const { return (size_t)B * T * KV * D; }
  size_t natt() const { return (size_t)B * H * T * T; }
};

// The textbook definition in double: for query (b, t, h), softmax over keys rs <= j <= t of q.k / sqrt(D).
void ref_forward(const Shape &s, const std::vector<double> &q, const std::vector<double> &k,
                 const std::vector<double> &v, std::vector<double> *out, std::vector<double> *att) {
  out->assign(s.nq(), 0.0);
  if (att) att->assign(s.natt(), 0.0);
  int g = s.H / s.KV;
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h)
      for (int t = s.start(b); t < s.T; ++t) {
        std::vector<double> p(s.T, 0.0);
        double mx = -1e300, sum = 0;
        for (int j = s.start(b); j <= t; ++j) {
          double dot = 0;
          for (int d = 0; d < s.D; ++d)
            dot += q[(((size_t)b * s.T + t) * s.H + h) * s.D + d] * k[(((size_t)b * s.T + j) * s.KV + h / g) * s.D + d];
          p[j] = dot / std::sqrt((double)s.D);
          mx = std::max(mx, p[j]);
        }
        for (int j = s.start(b); j <= t; ++j) sum += (p[j] = std::exp(p[j] - mx));
        for (int j = s.start(b); j <= t; ++j) {
          p[j] /= sum;
          if (att) (*att)[(((size_t)b * s.H + h) * s.T + t) * s.T + j] = p[j];
          for (int d = 0; d < s.D; ++d)
            (*out)[(((size_t)b * s.T + t) * s.H + h) * s.D + d] +=
                p[j] * v[(((size_t)b * s.T + j) * s.KV + h / g) * s.D + d];
        }
      }
}

struct Result {
  std::vector<float> out, att, dq, dk, dv;
};

// Forward (and backward with dout when given) on the CPU; outputs start as NaN so every element must be written.
Result run_cpu(const Shape &s, const std::vector<float> &q, const std::vector<float> &k, const std::vector<float> &v,
            const std::vector<float> *dout = nullptr) {
  drl_device dev = cpu_device();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Result r;
  r.out.assign(s.nq(), nan);
  r.att.assign(s.natt(), nan);
  std::vector<float> scratch(drl_attention_scratch_floats(&dev, s.B, s.T, s.H, s.KV, s.D), nan);
  EXPECT_EQ(drl_attention_forward(&dev, r.out.data(), r.att.data(), q.data(), k.data(), v.data(), s.row_start(), s.B,
                                  s.T, s.H, s.KV, s.D, nullptr),
            DRL_OK)
      << last_error();
  if (dout) {
    r.dq.assign(s.nq(), nan);
    r.dk.assign(s.nkv(), nan);
    r.dv.assign(s.nkv(), nan);
    EXPECT_EQ(drl_attention_backward(&dev, r.dq.data(), r.dk.data(), r.dv.data(), dout->data(), q.data(), k.data(),
                                     v.data(), r.att.data(), s.row_start(), s.B, s.T, s.H, s.KV, s.D, scratch.data()),
              DRL_OK)
        << last_error();
  }
  return r;
}

const std::vector<Shape> kShapes = {
    {2, 7, 4, 2, 8, {0, 3}},      // GQA, one padded row
    {1, 5, 3, 3, 4, {}},          // KV = H, no padding
    {3, 1, 2, 1, 4, {0, 1, 0}},   // T = 1, one batch row entirely padding
    {2, 16, 8, 2, 16, {5, 0}},    // group of 4
    {2, 6, 4, 1, 6, {6, 2}},      // one kv head, one batch row entirely padding
    {2, 40, 2, 2, 8, {33, 0}},    // rows longer than a warp
};

TEST(Attention, ForwardMatchesNaiveDouble) {
  uint32_t seed = 10;
  for (const Shape &s : kShapes) {
    SCOPED_TRACE(testing::Message() << "B=" << s.B << " T=" << s.T << " H=" << s.H << " KV=" << s.KV << " D=" << s.D);
    std::vector<float> q = random_uniform(s.nq(), seed++, -2, 2), k = random_uniform(s.nkv(), seed++, -2, 2),
                       v = random_uniform(s.nkv(), seed++);
    Result r = run_cpu(s, q, k, v);
    std::vector<double> out, att;
    ref_forward(s, to_double(q), to_double(k), to_double(v), &out, &att);
    for (size_t e = 0; e < out.size(); ++e) ASSERT_NEAR(r.out[e], out[e], 1e-5) << "out element " << e;
    for (size_t e = 0; e < att.size(); ++e) ASSERT_NEAR(r.att[e], att[e], 1e-6) << "att element " << e;
  }
}

TEST(Attention, AttRowsAreMaskedDistributions) {
  for (const Shape &s : kShapes) {
    SCOPED_TRACE(testing::Message() << "B=" << s.B << " T=" << s.T << " H=" << s.H << " KV=" << s.KV);
    Result r =
        run_cpu(s, random_uniform(s.nq(), 20, -3, 3), random_uniform(s.nkv(), 21, -3, 3), random_uniform(s.nkv(), 22));
    for (int b = 0; b < s.B; ++b)
      for (int h = 0; h < s.H; ++h)
        for (int t = 0; t < s.T; ++t) {
          const float *row = &r.att[(((size_t)b * s.H + h) * s.T + t) * s.T];
          double sum = 0;
          for (int j = 0; j < s.T; ++j) {
            bool valid = t >= s.start(b) && j >= s.start(b) && j <= t;
            if (valid) {
              ASSERT_GE(row[j], 0.0f);
            } else {
              ASSERT_EQ(row[j], 0.0f) << "masked entry b=" << b << " h=" << h << " t=" << t << " j=" << j;
            }
            sum += row[j];
          }
          if (t >= s.start(b)) {
            ASSERT_NEAR(sum, 1.0, 1e-6) << "b=" << b << " h=" << h << " t=" << t;
          } else {
            for (int d = 0; d < s.D; ++d) ASSERT_EQ(r.out[(((size_t)b * s.T + t) * s.H + h) * s.D + d], 0.0f);
          }
        }
  }
}

// loss = sum w * out, differentiated by central differences of the double reference.
void check_backward(const Shape &s, uint32_t seed) {
  SCOPED_TRACE(testing::Message() << "B=" << s.B << " T=" << s.T << " H=" << s.H << " KV=" << s.KV << " D=" << s.D
                                  << " padded=" << !s.rs.empty());
  std::vector<float> q = random_uniform(s.nq(), seed, -2, 2), k = random_uniform(s.nkv(), seed + 1, -2, 2),
                     v = random_uniform(s.nkv(), seed + 2), w = random_uniform(s.nq(), seed + 3);
  Result r = run_cpu(s, q, k, v, &w);
  std::vector<double> qd = to_double(q), kd = to_double(k), vd = to_double(v);
  auto loss = [&]() {
    std::vector<double> out;
    ref_forward(s, qd, kd, vd, &out, nullptr);
    double l = 0;
    for (size_t e = 0; e < out.size(); ++e) l += w[e] * out[e];
    return l;
  };
  struct Wrt {
    const char *name;
    std::vector<double> *x;
    const std::vector<float> *grad;
  } wrts[] = {{"dq", &qd, &r.dq}, {"dk", &kd, &r.dk}, {"dv", &vd, &r.dv}};
  const double eps = 1e-5;
  for (const Wrt &wr : wrts) {
    std::vector<double> fd(wr.x->size());
    double scale = 0;
    for (size_t e = 0; e < fd.size(); ++e) {
      double keep = (*wr.x)[e];
      (*wr.x)[e] = keep + eps;
      double lp = loss();
      (*wr.x)[e] = keep - eps;
      double lm = loss();
      (*wr.x)[e] = keep;
      fd[e] = (lp - lm) / (2 * eps);
      scale = std::max(scale, std::fabs(fd[e]));
    }
    ASSERT_GT(scale, 0.1) << wr.name;
    double worst = 0;
    for (size_t e = 0; e < fd.size(); ++e) {
      float a = (*wr.grad)[e];
      ASSERT_TRUE(std::isfinite(a)) << wr.name << " element " << e << " was not written";
      if (fd[e] == 0.0) {  // a padded position: the reference never reads it, the gradient is exactly zero
        ASSERT_EQ(a, 0.0f) << wr.name << " element " << e;
        continue;
      }
      // relative error, floored at 1% of the tensor's largest gradient so near-zero entries do not dominate
      double rel = std::fabs(a - fd[e]) / std::max(std::fabs(fd[e]), 1e-2 * scale);
      worst = std::max(worst, rel);
      ASSERT_LT(rel, 1e-3) << wr.name << " element " << e << ": " << a << " vs " << fd[e];
    }
    testing::Test::RecordProperty(std::string(wr.name) + "_worst_rel_err", std::to_string(worst));
  }
}

TEST(Attention, BackwardMatchesFiniteDifferences) {
  check_backward({2, 5, 4, 2, 6, {0, 2}}, 30);  // GQA with padding
  check_backward({2, 5, 4, 2, 6, {}}, 40);      // GQA without
  check_backward({1, 5, 2, 2, 6, {3}}, 50);     // KV = H, two valid rows (the first sees one key: dq = 0)
  check_backward({2, 5, 4, 1, 6, {1, 0}}, 60);  // one kv head
}

TEST(Attention, FutureTokensDoNotChangeEarlierOutputs) {
  Shape s{2, 6, 4, 2, 8, {0, 1}};
  std::vector<float> q = random_uniform(s.nq(), 70), k = random_uniform(s.nkv(), 71), v = random_uniform(s.nkv(), 72);
  Result base = run_cpu(s, q, k, v);
  const int t0 = 3;
  for (int kv = 0; kv < s.KV; ++kv)
    for (int d = 0; d < s.D; ++d) {
      size_t e = (((size_t)0 * s.T + t0) * s.KV + kv) * s.D + d;
      k[e] += 0.5f;
      v[e] -= 0.7f;
    }
  Result changed = run_cpu(s, q, k, v);
  size_t row = (size_t)s.H * s.D;  // one token's outputs
  for (int t = 0; t < s.T; ++t) {
    bool same = std::memcmp(&base.out[(size_t)t * row], &changed.out[(size_t)t * row], row * sizeof(float)) == 0;
    if (t < t0) {
      EXPECT_TRUE(same) << "output at t=" << t << " depends on token " << t0;
    } else {
      EXPECT_FALSE(same) << "output at t=" << t << " ignores token " << t0;
    }
  }
  EXPECT_EQ(std::memcmp(&base.out[(size_t)s.T * row], &changed.out[(size_t)s.T * row], (size_t)s.T * row * 4), 0)
      << "another batch row changed";
}

TEST(Attention, PaddedTokensAreIgnored) {
  Shape s{2, 7, 4, 2, 6, {3, 0}};
  std::vector<float> q = random_uniform(s.nq(), 80), k = random_uniform(s.nkv(), 81), v = random_uniform(s.nkv(), 82),
                     w = random_uniform(s.nq(), 83);
  Result base = run_cpu(s, q, k, v, &w);
  for (int t = 0; t < s.rs[0]; ++t) {  // rewrite everything the padding holds in batch row 0
    for (int e = 0; e < s.H * s.D; ++e) q[(size_t)t * s.H * s.D + e] = 100.0f;
    for (int e = 0; e < s.KV * s.D; ++e) {
      k[(size_t)t * s.KV * s.D + e] = -50.0f;
      v[(size_t)t * s.KV * s.D + e] = 9.0f;
    }
  }
  Result changed = run_cpu(s, q, k, v, &w);
  EXPECT_EQ(base.out, changed.out);
  EXPECT_EQ(base.att, changed.att);
  EXPECT_EQ(base.dq, changed.dq);
  EXPECT_EQ(base.dk, changed.dk);
  EXPECT_EQ(base.dv, changed.dv);
  for (int t = 0; t < s.rs[0]; ++t) {
    for (int e = 0; e < s.H * s.D; ++e) ASSERT_EQ(changed.dq[(size_t)t * s.H * s.D + e], 0.0f);
    for (int e = 0; e < s.KV * s.D; ++e) {
      ASSERT_EQ(changed.dk[(size_t)t * s.KV * s.D + e], 0.0f);
      ASSERT_EQ(changed.dv[(size_t)t * s.KV * s.D + e], 0.0f);
    }
  }
}

TEST(Attention, BitIdenticalWithOneOrTwoThreads) {
  Shape s{3, 9, 6, 3, 8, {0, 4, 2}};
  std::vector<float> q = random_uniform(s.nq(), 90), k = random_uniform(s.nkv(), 91), v = random_uniform(s.nkv(), 92),
                     w = random_uniform(s.nq(), 93);
  int keep = omp_get_max_threads();
  omp_set_num_threads(1);
  Result one = run_cpu(s, q, k, v, &w);
  omp_set_num_threads(2);
  Result two = run_cpu(s, q, k, v, &w);
  omp_set_num_threads(keep);
  EXPECT_EQ(std::memcmp(one.out.data(), two.out.data(), one.out.size() * 4), 0);
  EXPECT_EQ(std::memcmp(one.att.data(), two.att.data(), one.att.size() * 4), 0);
  EXPECT_EQ(std::memcmp(one.dq.data(), two.dq.data(), one.dq.size() * 4), 0);
  EXPECT_EQ(std::memcmp(one.dk.data(), two.dk.data(), one.dk.size() * 4), 0);
  EXPECT_EQ(std::memcmp(one.dv.data(), two.dv.data(), one.dv.size() * 4), 0);
}

TEST(Attention, SharedRowMath) {
  // softmax over an explicit key range, zeros elsewhere: the form a decode kernel will reuse
  float row[6] = {9.0f, 1.0f, 2.0f, 3.0f, 9.0f, 9.0f};
  drl_softmax_masked_row(row, 6, 1, 4);
  double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_EQ(row[0], 0.0f);
  EXPECT_NEAR(row[1], std::exp(1.0) / z, 1e-7);
  EXPECT_NEAR(row[3], std::exp(3.0) / z, 1e-7);
  EXPECT_EQ(row[4], 0.0f);
  EXPECT_EQ(row[5], 0.0f);
  float empty[3] = {1.0f, 2.0f, 3.0f};
  drl_softmax_masked_row(empty, 3, 2, 2);
  for (float e : empty) EXPECT_EQ(e, 0.0f);
  int lo, hi;
  drl_attention_key_range(5, 2, &lo, &hi);
  EXPECT_EQ(lo, 2);
  EXPECT_EQ(hi, 6);
  drl_attention_key_range(1, 2, &lo, &hi);
  EXPECT_EQ(lo, hi) << "a padded query sees no keys";
  // softmax backward: dpre = p * (dp - sum p dp)
  float p[4] = {0.0f, 0.25f, 0.75f, 0.0f}, dp[4] = {5.0f, 1.0f, -1.0f, 5.0f}, dpre[4];
  drl_softmax_backward_masked_row(p, dp, dpre, 4, 1, 3);
  EXPECT_EQ(dpre[0], 0.0f);
  EXPECT_FLOAT_EQ(dpre[1], 0.25f * (1.0f + 0.5f));
  EXPECT_FLOAT_EQ(dpre[2], 0.75f * (-1.0f + 0.5f));
  EXPECT_EQ(dpre[3], 0.0f);
}

TEST(Attention, Errors) {
  drl_device dev = cpu_device();
  Shape s{2, 4, 6, 4, 8, {0, 1}};
  std::vector<float> q(s.nq()), k((size_t)s.B * s.T * s.KV * s.D), v(k.size()), out(s.nq()), att(s.natt());
  drl_clear_error();
  EXPECT_EQ(drl_attention_forward(&dev, out.data(), att.data(), q.data(), k.data(), v.data(), nullptr, s.B, s.T, s.H,
                                  s.KV, s.D, nullptr),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("do not divide");
  std::vector<float> dq(s.nq()), dk(k.size()), dv(k.size()), scratch(1024);
  EXPECT_EQ(drl_attention_backward(&dev, dq.data(), dk.data(), dv.data(), out.data(), q.data(), k.data(), v.data(),
                                   att.data(), nullptr, s.B, s.T, s.H, s.KV, s.D, scratch.data()),
            DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_attention_scratch_floats(&dev, s.B, s.T, s.H, s.KV, s.D), 0) << "invalid sizes need no scratch";

  Shape ok{2, 4, 4, 2, 8, {0, 5}};  // row_start beyond T
  EXPECT_EQ(drl_attention_scratch_floats(&dev, ok.B, ok.T, ok.H, ok.KV, ok.D), (int64_t)ok.B * ok.KV * ok.T);
  std::vector<float> q2(ok.nq()), k2(ok.nkv()), v2(ok.nkv()), out2(ok.nq()), att2(ok.natt());
  EXPECT_EQ(drl_attention_forward(&dev, out2.data(), att2.data(), q2.data(), k2.data(), v2.data(), ok.row_start(),
                                  ok.B, ok.T, ok.H, ok.KV, ok.D, nullptr),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("row_start[1] = 5");
  std::vector<float> dq2(ok.nq()), dk2(ok.nkv()), dv2(ok.nkv());
  EXPECT_EQ(drl_attention_backward(&dev, dq2.data(), dk2.data(), dv2.data(), out2.data(), q2.data(), k2.data(),
                                   v2.data(), att2.data(), nullptr, ok.B, ok.T, ok.H, ok.KV, ok.D, nullptr),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("scratch");
  EXPECT_EQ(drl_attention_forward(&dev, nullptr, att2.data(), q2.data(), k2.data(), v2.data(), nullptr, ok.B, ok.T,
                                  ok.H, ok.KV, ok.D, nullptr),
            DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_attention_forward(&dev, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, ok.T, ok.H, ok.KV,
                                  ok.D, nullptr),
            DRL_OK)
      << "an empty batch is a no-op";
}

}  // namespace
