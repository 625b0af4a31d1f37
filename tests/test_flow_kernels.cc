// Kernels of the flow policy on the CPU, against references that do not share their code:
//   bias      add (one float add per element) and backward (the documented double sum, rows ascending, BIT FOR BIT on
//             gradients whose sum rounds differently in every order; accuracy against long double; += semantics; any
//             thread count);
//   SiLU      on the engine-owned sigmoid: within 4 ulp of double, the exact documented float-op sequence (what the GPU
//             must reproduce), backward against the analytic double form and finite differences of the forward,
//             extreme and non-finite inputs, aliasing, thread count;
//   sincos    philox.h's drl_rng_sincos2pi for general floats in [0, 1] (the time embedding feeds it more than the
//             24-bit Box-Muller grid it was written for);
//   time      the sinusoidal embedding against double sin / cos, negative, huge and non-finite times, the geometric
//             frequencies;
//   logf      drl_rng_logf on positive normal floats (the SDE's log-density uses it above 1);
//   SDE       the Flow-GRPO step of kernels/sde.h (research note C.1): sigma and the time grid, the ODE rows, the sample
//             against a double-precision mean plus the addressed Philox noise, the noise's addressing and distribution,
//             the step's log-probability equal BIT FOR BIT to the training-side one (the on-policy ratio is exactly 1)
//             and to a double Gaussian density, the sum over d in the documented 32-lane order (BIT FOR BIT in double
//             against a naive reference, D below, at and past the warp), the backward against finite differences,
//             thread count;
//   marginal  the acceptance test of the issue: with the exact velocity of Gaussian data the SDE at T = 40 ends within
//             2% of the data's mean and variance (noise a = 0.7 and 1.5), and the Euler ODE matches its discrete
//             chain's closed form (7% low at T = 40) and is within 2% at T = 400.
// tests/gpu/test_gpu_flow.cc compares the CUDA kernels with these, bit for bit.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "kernels/bias.h"
#include "kernels/exp.h"
#include "kernels/philox.h"
#include "kernels/rng_fill.h"
#include "kernels/sde.h"
#include "kernels/silu.h"
#include "kernels/time_embed.h"
}

namespace {

// ================================================================ shared helpers

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();
const double kPi = 3.14159265358979323846;

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The index of the first element whose bits differ, or -1 (0 when the sizes differ).
int64_t first_diff(const std::vector<float> &a, const std::vector<float> &b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (bits(a[i]) != bits(b[i])) return (int64_t)i;
  return -1;
}

// One unit in the last place of |f| (normal floats; 2^-149 below).
double ulp(float f) {
  int e;
  std::frexp(std::fabs((double)f), &e);
  return std::ldexp(1.0, std::max(e, -125) - 24);
}

// Distance in ulps between two finite floats of the same sign.
int64_t ulp_diff(float a, float b) { return std::llabs((int64_t)bits(a) - (int64_t)bits(b)); }

// A number for RecordProperty, in %.4g (std::to_string would print small errors as 0.000000).
std::string sci(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

// ---- bias

// Gradients of a bias (rows >= 2): mixed_values, plus in every column a pair +-B (B ~ 2^60) at two column-dependent
// rows, so the double sum rounds away a different part of the small terms in every summation order: the bits show the
// order.
std::vector<float> order_sensitive_columns(int64_t rows, int cols, uint32_t seed) {
  auto dy = mixed_values((size_t)rows * cols, seed);
  std::mt19937 g(seed + 1);
  std::uniform_real_distribution<float> u(1.0f, 2.0f);
  for (int c = 0; c < cols; ++c) {
    int64_t p = (c * 37) % rows, q = (p + 1 + (c * 101) % (rows - 1)) % rows;
    float big = std::ldexp(u(g), 60);
    dy[p * cols + c] = big;
    dy[q * cols + c] = -big;
  }
  return dy;
}

// The reference the header promises: per column, double, r ascending, rounded to float once, then one float add.
// order 1: rows descending; order 2: chunks of 256 rows summed separately, then the chunk sums (a tree-like GPU order).
std::vector<float> ref_bias_backward(const std::vector<float> &db, const std::vector<float> &dy, int64_t rows, int cols,
                                     int order = 0) {
  std::vector<float> out = db;
  for (int c = 0; c < cols; ++c) {
    volatile double acc = 0.0;
    if (order == 2) {
      for (int64_t r0 = 0; r0 < rows; r0 += 256) {
        volatile double part = 0.0;
        for (int64_t r = r0; r < std::min(rows, r0 + 256); ++r) part = part + (double)dy[r * cols + c];
        acc = acc + part;
      }
    } else {
      for (int64_t i = 0; i < rows; ++i) {
        int64_t r = order == 1 ? rows - 1 - i : i;
        acc = acc + (double)dy[r * cols + c];
      }
    }
    volatile float add = (float)acc;
    out[c] = db[c] + add;
  }
  return out;
}

// ---- SiLU

double silu_d(double x) { return x / (1.0 + std::exp(-x)); }
double dsilu_d(double x) {
  double s = 1.0 / (1.0 + std::exp(-x));
  return s + x * s * (1.0 - s);
}

// ---- SDE

// The C.1 mean, written as in the research note (not in sde.h's coefficient form), in double.
double sde_mu_d(double x, double v, double t, double dt, double sigma) {
  return x + (v + sigma * sigma / (2.0 * t) * (x + (1.0 - t) * v)) * dt;
}

// A batch of SDE rows as the tree sampler makes them: per row its own t, dt, sigma and noise index.
struct SdeBatch {
  int64_t rows;
  int D;
  std::vector<float> x, v, t, dt, sigma;
  std::vector<uint64_t> noise;
};

// rows rows of D dims. Row r takes step k = r % T of a T = 20, shift 3 grid (k = 0 is t = 1, capped by t_1) with
// noise a in [0.3, 1.2] and depth growth g in [1, 2]; when ode_every > 0 every ode_every-th row has sigma 0 (its noise
// index is then a sentinel that must not matter). Noise indices are scattered and above 2^32, so the addressing shows.
SdeBatch make_batch(int64_t rows, int D, uint32_t seed, int ode_every = 0) {
  SdeBatch b;
  b.rows = rows;
  b.D = D;
  b.x = random_normal((size_t)rows * D, 1.0f, seed);
  b.v = random_normal((size_t)rows * D, 1.5f, seed + 1);
  auto a = random_uniform((size_t)rows, seed + 2, 0.3f, 1.2f);
  auto g = random_uniform((size_t)rows, seed + 3, 1.0f, 2.0f);
  const int T = 20;
  std::vector<float> grid(T + 1);
  drl_time_grid(grid.data(), T, 3.0f);
  b.t.resize(rows);
  b.dt.resize(rows);
  b.sigma.resize(rows);
  b.noise.resize(rows);
  for (int64_t r = 0; r < rows; ++r) {
    int k = (int)(r % T);
    b.t[r] = grid[k];
    b.dt[r] = grid[k + 1] - grid[k];
    b.sigma[r] = drl_sde_sigma(a[r], g[r], grid[k], grid[1]);
    b.noise[r] = 1000003ull + 7919ull * (uint64_t)((r * 37) % (rows + 1)) + ((uint64_t)1 << 33);
    if (ode_every > 0 && r % ode_every == 0) {
      b.sigma[r] = 0.0f;
      b.noise[r] = ~0ull;
    }
  }
  return b;
}

const drl_rng_stream kStream = {0x5eed5eedULL, 3, drl_rng_tag(DRL_RNG_SDE, 9, 0)};

struct StepOut {
  std::vector<float> xn, logp;
};

// drl_sde_step on the CPU device, with log-probabilities.
StepOut run_step(const SdeBatch &b, drl_rng_stream s, int mean) {
  drl_device cpu = cpu_device();
  StepOut o;
  o.xn.resize(b.x.size());
  o.logp.resize(b.rows);
  EXPECT_EQ(drl_sde_step(&cpu, o.xn.data(), o.logp.data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(),
                         b.sigma.data(), b.noise.data(), s, b.rows, b.D, mean),
            DRL_OK)
      << last_error();
  return o;
}

// drl_sde_logprob of a given x_next on the CPU device.
std::vector<float> run_logprob(const SdeBatch &b, const std::vector<float> &xn, int mean) {
  drl_device cpu = cpu_device();
  std::vector<float> lp(b.rows);
  EXPECT_EQ(drl_sde_logprob(&cpu, lp.data(), xn.data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(),
                            b.sigma.data(), b.rows, b.D, mean),
            DRL_OK)
      << last_error();
  return lp;
}

}  // namespace

// ================================================================ bias

TEST(FlowBias, AddIsOneRoundedFloatAddPerElement) {
  drl_device cpu = cpu_device();
  const std::pair<int64_t, int> shapes[] = {{0, 5}, {1, 1}, {9, 1}, {17, 3}, {64, 65}, {700, 130}};
  uint32_t seed = 1;
  for (auto [rows, cols] : shapes) {
    auto y0 = random_uniform((size_t)rows * cols, seed++, -4.0f, 4.0f);
    auto b = random_uniform((size_t)cols, seed++, -2.0f, 2.0f);
    auto y = y0;
    ASSERT_EQ(drl_bias_add(&cpu, y.data(), b.data(), rows, cols), DRL_OK) << last_error();
    for (int64_t r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        size_t i = (size_t)r * cols + c;
        // One float add, correctly rounded: the double sum rounded to float is the same value.
        float ref = (float)((double)y0[i] + (double)b[c]);
        ASSERT_EQ(bits(y[i]), bits(ref)) << "rows " << rows << " cols " << cols << " at (" << r << ", " << c << ")";
      }
  }
  // Nothing to do: NULL buffers are fine.
  EXPECT_EQ(drl_bias_add(&cpu, nullptr, nullptr, 0, 7), DRL_OK);
  EXPECT_EQ(drl_bias_add(&cpu, nullptr, nullptr, 5, 0), DRL_OK);
}

// The value: db + the column sums, within the roundings the header allows, added into db (twice adds twice).
TEST(FlowBias, BackwardAddsTheColumnSumsIntoDb) {
  drl_device cpu = cpu_device();
  const std::pair<int64_t, int> shapes[] = {{0, 4}, {1, 1}, {300, 1}, {7, 3}, {129, 64}, {257, 65}, {600, 200}};
  uint32_t seed = 100;
  for (auto [rows, cols] : shapes) {
    auto dy = mixed_values((size_t)rows * cols, seed++);
    auto db0 = random_uniform((size_t)cols, seed++, -3.0f, 3.0f);  // nonzero: the backward adds into db
    auto db = db0;
    ASSERT_EQ(drl_bias_backward(&cpu, db.data(), dy.data(), rows, cols), DRL_OK) << last_error();
    for (int c = 0; c < cols; ++c) {
      long double S = 0.0L, A = 0.0L;  // the column sum (long double) and its magnitude
      for (int64_t r = 0; r < rows; ++r) {
        S += dy[(size_t)r * cols + c];
        A += std::fabs(dy[(size_t)r * cols + c]);
      }
      double want = (double)db0[c] + (double)S;
      // Rounding the column total to float and the one float add: half an ulp each (plus the double sum's error).
      double tol = 0.5 * ulp((float)S) + 0.5 * ulp((float)want) + 1e-14 * (double)A;
      EXPECT_LE(std::fabs((double)db[c] - want), tol)
          << "rows " << rows << " cols " << cols << " column " << c << ": got " << db[c] << " want " << want;
      if (rows == 0) {
        EXPECT_EQ(bits(db[c]), bits(db0[c]));
      }
    }
  }
  EXPECT_EQ(drl_bias_backward(&cpu, nullptr, nullptr, 0, 3), DRL_OK);
  // Twice adds twice (exact in float).
  std::vector<float> dy(50 * 3, 0.25f), db(3, 1.0f);
  ASSERT_EQ(drl_bias_backward(&cpu, db.data(), dy.data(), 50, 3), DRL_OK);
  ASSERT_EQ(drl_bias_backward(&cpu, db.data(), dy.data(), 50, 3), DRL_OK);
  for (float g : db) EXPECT_EQ(g, 1.0f + 2 * 12.5f);
}

// The bits: the documented algorithm exactly, on gradients whose sum rounds differently in every order.
TEST(FlowBias, BackwardBitExactAgainstDoubleRowAscendingReference) {
  drl_device cpu = cpu_device();
  for (int cols : {1, 2, 63, 64, 65, 130}) {  // around the CPU's column block of 64
    for (int64_t rows : {2, 3001}) {
      auto dy = order_sensitive_columns(rows, cols, 3 + cols);
      auto db = random_uniform(cols, 4);
      auto got = db;
      ASSERT_EQ(drl_bias_backward(&cpu, got.data(), dy.data(), rows, cols), DRL_OK) << last_error();
      EXPECT_EQ(first_diff(got, ref_bias_backward(db, dy, rows, cols)), -1) << "rows " << rows << " cols " << cols;
    }
  }
}

// The test above has teeth: for these inputs the bits do depend on the order of the double sum, so a kernel that
// summed in any other order (rows descending, or in chunks) fails it.
TEST(FlowBias, BackwardOrderIsVisibleInTheBits) {
  const int64_t rows = 3001;
  const int cols = 130;
  auto dy = order_sensitive_columns(rows, cols, 5);
  std::vector<float> db(cols, 0.0f);
  auto fwd = ref_bias_backward(db, dy, rows, cols), rev = ref_bias_backward(db, dy, rows, cols, 1),
       chunked = ref_bias_backward(db, dy, rows, cols, 2);
  int differ_rev = 0, differ_chunk = 0;
  for (int c = 0; c < cols; ++c) {
    differ_rev += bits(fwd[c]) != bits(rev[c]);
    differ_chunk += bits(fwd[c]) != bits(chunked[c]);
  }
  std::printf("bias backward: of %d columns, %d change bits when summed in reverse, %d when summed in chunks of 256\n",
              cols, differ_rev, differ_chunk);
  EXPECT_GT(differ_rev, cols / 4);
  EXPECT_GT(differ_chunk, cols / 4);
}

TEST(FlowBias, AddAndBackwardIdenticalForAnyThreadCount) {
  drl_device cpu = cpu_device();
  // Large enough for the parallel paths (rows * cols > 2^16): several 64-column blocks, a partial last one, one column.
  const std::pair<int64_t, int> shapes[] = {{20000, 200}, {70000, 1}, {1100, 67}};
  for (auto [rows, cols] : shapes) {
    auto dy = order_sensitive_columns(rows, cols, 7 + cols);
    auto y0 = random_uniform((size_t)rows * cols, 8 + cols);
    auto b = random_uniform((size_t)cols, 9 + cols);
    auto db0 = random_uniform((size_t)cols, 10 + cols);
    std::vector<float> y1, db1;
    for (int th : {1, 2, 3, 5}) {
      auto y = y0, db = db0;
      with_threads(th, [&] {
        ASSERT_EQ(drl_bias_add(&cpu, y.data(), b.data(), rows, cols), DRL_OK);
        ASSERT_EQ(drl_bias_backward(&cpu, db.data(), dy.data(), rows, cols), DRL_OK);
      });
      if (th == 1) {
        y1 = y, db1 = db;
        continue;
      }
      EXPECT_EQ(first_diff(y, y1), -1) << "bias add, rows " << rows << " cols " << cols << ", " << th << " threads";
      EXPECT_EQ(first_diff(db, db1), -1) << "bias backward, rows " << rows << " cols " << cols << ", " << th
                                         << " threads";
    }
  }
}

TEST(FlowBias, RejectsBadArguments) {
  drl_device cpu = cpu_device();
  std::vector<float> y(6), b(3);
  drl_clear_error();
  EXPECT_EQ(drl_bias_add(&cpu, y.data(), b.data(), -1, 3), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("drl_bias_add");
  EXPECT_EQ(drl_bias_add(&cpu, y.data(), b.data(), 2, -3), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_bias_add(&cpu, nullptr, b.data(), 2, 3), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("NULL buffer");
  EXPECT_EQ(drl_bias_backward(&cpu, b.data(), y.data(), -2, 3), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("drl_bias_backward");
  EXPECT_EQ(drl_bias_backward(&cpu, b.data(), nullptr, 2, 3), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_bias_backward(&cpu, b.data(), y.data(), INT64_MAX / 2, 3), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("overflows");
}

// ================================================================ SiLU

// Bound: drl_sigmoid_exact is within 3 ulp (test_moe_kernels), the product x s adds half an ulp: 4 ulp of the double
// SiLU for x >= -80; 1e-6 relative down to -86 (the sigmoid's documented range is z >= -87). Below x = -88.7 the clamp
// inside drl_expf takes over (FlowSilu.ExtremeAndNonFiniteInputs).
TEST(FlowSilu, ForwardWithinFourUlpOfDouble) {
  drl_device cpu = cpu_device();
  std::vector<float> x = {0.0f, -0.0f, 1.0f, -1.0f};
  for (int i = -800000; i <= 800000; ++i) x.push_back((float)i * 1e-4f);  // [-80, 80] in steps of 1e-4
  for (int e = -30; e <= 6; ++e)                                         // both signs from 2^-30 to 86, dense
    for (int j = 0; j < 64; ++j) {
      float m = std::ldexp(1.0f + j / 64.0f, e);
      if (m > 86.0f) continue;
      x.push_back(m);
      x.push_back(-m);
    }
  for (float z = -1.0f; z <= -0.999f; z = std::nextafterf(z, INFINITY)) x.push_back(z);
  for (float z = 0x1p-20f; z <= 0x1.01p-20f; z = std::nextafterf(z, INFINITY)) x.push_back(z);
  auto r = random_uniform(200000, 7, -20.0f, 20.0f);
  x.insert(x.end(), r.begin(), r.end());
  std::vector<float> out(x.size());
  ASSERT_EQ(drl_silu_forward(&cpu, out.data(), x.data(), (int64_t)x.size()), DRL_OK) << last_error();
  int64_t max_ulp = 0;
  float worst = 0.0f;
  double worst_rel = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == 0.0f) {
      ASSERT_EQ(out[i], 0.0f);
      continue;
    }
    // sigmoid in (0, 1]: silu(x) has the sign of x and |silu(x)| <= |x|.
    ASSERT_LE(std::fabs(out[i]), std::fabs(x[i])) << "x " << x[i];
    ASSERT_EQ(std::signbit(out[i]), std::signbit(x[i])) << "x " << x[i];
    double ref = silu_d(x[i]), rel = std::fabs((double)out[i] - ref) / std::fabs(ref);
    worst_rel = std::max(worst_rel, rel);
    ASSERT_LE(rel, 1e-6) << "x " << x[i] << ": got " << out[i] << " want " << ref;
    if (x[i] >= -80.0f) {
      int64_t d = ulp_diff(out[i], (float)ref);
      if (d > max_ulp) max_ulp = d, worst = x[i];
    }
  }
  std::printf("silu forward: max %lld ulp vs the double SiLU over %zu inputs (worst x = %a)\n", (long long)max_ulp,
              x.size(), worst);
  RecordProperty("silu_worst_relative_error", sci(worst_rel));
  EXPECT_LE(max_ulp, 4) << "at x = " << worst;
}

// Both backends run exactly this arithmetic (one rounding per op on drl_sigmoid_exact): a SiLU on libm's expf, or with
// the ops in another order, would be just as accurate but would no longer match the GPU bit for bit.
TEST(FlowSilu, ForwardAndBackwardAreTheDocumentedFloatOps) {
  drl_device cpu = cpu_device();
  const int64_t n = 200000;
  auto x = random_uniform(n, 16, -30.0f, 30.0f), dout = random_uniform(n, 17, -3.0f, 3.0f);
  std::vector<float> out(n), dx(n);
  ASSERT_EQ(drl_silu_forward(&cpu, out.data(), x.data(), n), DRL_OK);
  ASSERT_EQ(drl_silu_backward(&cpu, dx.data(), dout.data(), x.data(), n), DRL_OK);
  for (int64_t i = 0; i < n; ++i) {
    volatile float s = drl_sigmoid_exact(x[i]);
    volatile float f = x[i] * s;
    ASSERT_EQ(bits(out[i]), bits(f)) << x[i];
    volatile float one_minus = 1.0f - s;
    volatile float xs = x[i] * s;
    volatile float term = xs * one_minus;
    volatile float deriv = s + term;
    volatile float g = dout[i] * deriv;
    ASSERT_EQ(bits(dx[i]), bits(g)) << x[i];
  }
}

TEST(FlowSilu, BackwardMatchesAnalyticDoubleAndFiniteDifferences) {
  drl_device cpu = cpu_device();
  std::vector<float> x = {0.0f, 1e-3f, -1.2784645f /* the minimum of silu: derivative 0 */, 2.3f, -4.0f, 15.0f, -15.0f,
                          30.0f, -30.0f};
  auto r = random_uniform(4000, 9, -10.0f, 10.0f);
  x.insert(x.end(), r.begin(), r.end());
  const int64_t n = (int64_t)x.size();
  auto dout = random_uniform(x.size(), 10, -2.0f, 2.0f);
  std::vector<float> dx(n);
  ASSERT_EQ(drl_silu_backward(&cpu, dx.data(), dout.data(), x.data(), n), DRL_OK) << last_error();
  // Analytic: the error of s + x s (1 - s) is a few ulp of its two terms' magnitudes (they cancel near x = -1.28).
  double max_rel = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double s = 1.0 / (1.0 + std::exp(-(double)x[i]));
    double scale = std::fabs(dout[i]) * (s + std::fabs(x[i] * s * (1.0 - s)));
    double err = std::fabs(dx[i] - dout[i] * dsilu_d(x[i])) / scale;
    max_rel = std::max(max_rel, err);
    ASSERT_LT(err, 8.0 * FLT_EPSILON) << "x = " << x[i];
  }
  std::printf("silu backward: max error %.2f eps (relative to the terms' magnitude) vs the analytic double formula\n",
              max_rel / FLT_EPSILON);
  // Central differences of the forward kernel itself.
  const float h = 1e-2f;
  std::vector<float> xp(n), xm(n), fp(n), fm(n);
  for (int64_t i = 0; i < n; ++i) xp[i] = x[i] + h, xm[i] = x[i] - h;
  ASSERT_EQ(drl_silu_forward(&cpu, fp.data(), xp.data(), n), DRL_OK);
  ASSERT_EQ(drl_silu_forward(&cpu, fm.data(), xm.data(), n), DRL_OK);
  std::vector<double> fd(n);
  for (int64_t i = 0; i < n; ++i) fd[i] = dout[i] * ((double)fp[i] - fm[i]) / ((double)xp[i] - xm[i]);
  expect_grad_close(dx, fd, "silu dx");
  // The derivative's limits: 1/2 at 0, 1 for large x, 0 for very negative x.
  float xs[] = {0.0f, 60.0f, -60.0f}, ones[] = {1.0f, 1.0f, 1.0f}, g[3];
  ASSERT_EQ(drl_silu_backward(&cpu, g, ones, xs, 3), DRL_OK);
  EXPECT_EQ(g[0], 0.5f);
  EXPECT_EQ(g[1], 1.0f);
  EXPECT_LT(std::fabs(g[2]), 1e-20f);
}

TEST(FlowSilu, ExtremeAndNonFiniteInputs) {
  drl_device cpu = cpu_device();
  // Finite inputs, however large, give finite values and finite gradients (the clamp of e^x keeps 1 + e^-x finite).
  std::vector<float> fin = {100.0f, -100.0f, 1e4f, -1e4f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN,
                            1e-40f, -1e-40f, 88.7f, -88.7f, 87.3f, -87.3f, 90.0f, -90.0f, -200.0f};
  std::vector<float> out(fin.size()), dx(fin.size()), ones(fin.size(), 1.0f);
  ASSERT_EQ(drl_silu_forward(&cpu, out.data(), fin.data(), (int64_t)fin.size()), DRL_OK);
  ASSERT_EQ(drl_silu_backward(&cpu, dx.data(), ones.data(), fin.data(), (int64_t)fin.size()), DRL_OK);
  for (size_t i = 0; i < fin.size(); ++i) {
    EXPECT_TRUE(std::isfinite(out[i])) << "silu(" << fin[i] << ") = " << out[i];
    EXPECT_TRUE(std::isfinite(dx[i])) << "silu'(" << fin[i] << ") = " << dx[i];
    const float x = fin[i];
    if (x >= 90.0f) {
      // The sigmoid rounds to 1: silu(x) = x and silu'(x) = 1 exactly.
      EXPECT_EQ(out[i], x);
      EXPECT_EQ(dx[i], 1.0f) << "x " << x;
    } else if (x <= -88.7f) {
      // The clamp inside drl_expf holds the sigmoid at 1 / (1 + e^88.7) ~ 3.0e-39, so silu(x) is about -3e-39 |x|
      // rather than -|x| e^x (~ 0): a negligible absolute error for any activation a network makes, never NaN.
      EXPECT_LE(out[i], 0.0f) << "x " << x;
      EXPECT_LE(std::fabs(out[i]), 3.1e-39 * std::fabs(x)) << "x " << x;
      if (x > -1e30f) {
        EXPECT_LT(std::fabs(dx[i]), 1e-30f) << "x " << x;
      }
    }
  }
  // Non-finite inputs never come out finite (a diverged activation must stay visible to the grad-norm check):
  // NaN stays NaN, silu(+-inf) = +-inf, and the gradient at +-inf or NaN is not a number a step would use.
  std::vector<float> bad = {kNaN, kInf, -kInf};
  std::vector<float> ob(3), gb(3), ones3(3, 1.0f);
  ASSERT_EQ(drl_silu_forward(&cpu, ob.data(), bad.data(), 3), DRL_OK);
  ASSERT_EQ(drl_silu_backward(&cpu, gb.data(), ones3.data(), bad.data(), 3), DRL_OK);
  EXPECT_TRUE(std::isnan(ob[0]));
  EXPECT_EQ(ob[1], kInf);
  EXPECT_EQ(ob[2], -kInf);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(std::isfinite(gb[i])) << "silu'(" << bad[i] << ") = " << gb[i];
  EXPECT_TRUE(std::isnan(gb[0]));
  // A NaN upstream gradient propagates at a finite x.
  float xn = 0.5f, dn = kNaN, gn;
  ASSERT_EQ(drl_silu_backward(&cpu, &gn, &dn, &xn, 1), DRL_OK);
  EXPECT_TRUE(std::isnan(gn));
}

TEST(FlowSilu, InPlaceAndAnyThreadCountGiveTheSameBits) {
  drl_device cpu = cpu_device();
  const int64_t n = 70000;  // over the parallel threshold
  auto x = random_uniform((size_t)n, 11, -9.0f, 9.0f);
  auto dout = random_uniform((size_t)n, 12, -1.0f, 1.0f);
  std::vector<float> out(n), dx(n);
  ASSERT_EQ(drl_silu_forward(&cpu, out.data(), x.data(), n), DRL_OK);
  ASSERT_EQ(drl_silu_backward(&cpu, dx.data(), dout.data(), x.data(), n), DRL_OK);
  auto inplace = x;
  ASSERT_EQ(drl_silu_forward(&cpu, inplace.data(), inplace.data(), n), DRL_OK);
  EXPECT_EQ(first_diff(inplace, out), -1) << "forward with out == x";
  auto dinplace = dout;
  ASSERT_EQ(drl_silu_backward(&cpu, dinplace.data(), dinplace.data(), x.data(), n), DRL_OK);
  EXPECT_EQ(first_diff(dinplace, dx), -1) << "backward with dx == dout";
  for (int th : {1, 2})
    with_threads(th, [&] {
      std::vector<float> o(n), d(n);
      ASSERT_EQ(drl_silu_forward(&cpu, o.data(), x.data(), n), DRL_OK);
      ASSERT_EQ(drl_silu_backward(&cpu, d.data(), dout.data(), x.data(), n), DRL_OK);
      EXPECT_TRUE(same_bits(o, out)) << th << " threads";
      EXPECT_TRUE(same_bits(d, dx)) << th << " threads";
    });
}

TEST(FlowSilu, RejectsBadArguments) {
  drl_device cpu = cpu_device();
  float a[2] = {1, 2}, b[2];
  EXPECT_EQ(drl_silu_forward(&cpu, b, a, -1), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative length -1");
  EXPECT_EQ(drl_silu_forward(&cpu, nullptr, a, 2), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("drl_silu_forward: NULL buffer");
  EXPECT_EQ(drl_silu_backward(&cpu, b, a, nullptr, 2), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("drl_silu_backward: NULL buffer");
  EXPECT_EQ(drl_silu_forward(&cpu, nullptr, nullptr, 0), DRL_OK);
  EXPECT_EQ(drl_silu_backward(&cpu, nullptr, nullptr, nullptr, 0), DRL_OK);
}

// ================================================================ sin / cos of a fraction of a turn

// drl_rng_sincos2pi for a general float v in [0, 1) (not only the 24-bit grid the Box-Muller transform feeds it): the
// range reduction v4 = 4 v (exact), q = (int)(v4 + 0.5), r = v4 - q is exact for every float in [0, 1) but one
// (v = 0.125 - 2^-27, where v4 + 0.5 ties up to 1 and r = -0.5 - 2^-25 rounds to -0.5: the value at 0.125, 4.7e-8
// off, under an ulp); an exhaustive run over all 1,065,353,216 floats found exactly that one. Here: dense sweeps over
// every quadrant boundary and random floats, sin and cos within 2e-7 of double.
TEST(FlowSinCos2pi, AccurateForGeneralFloatsInZeroToOne) {
  double max_err = 0.0;
  float worst = 0.0f;
  auto check = [&](float v) {
    float s, c;
    drl_rng_sincos2pi(v, &s, &c);
    double a = 2.0 * kPi * (double)v;
    double e = std::max(std::fabs(s - std::sin(a)), std::fabs(c - std::cos(a)));
    if (e > max_err) max_err = e, worst = v;
  };
  // Every float within 1e-4 of each quadrant and octant boundary (v4 + 0.5 rounds near the octants), then tiny v.
  for (float centre : {0.125f, 0.25f, 0.375f, 0.5f, 0.625f, 0.75f, 0.875f, 1.0f}) {
    float lo = centre - 1e-4f, hi = std::min(0x1.fffffep-1f, centre + 1e-4f);
    for (float v = lo; v <= hi; v = std::nextafterf(v, INFINITY)) check(v);
  }
  check(0.0f);
  for (float v = 0x1p-126f; v < 1e-3f; v *= 1.0001f) check(v);
  std::mt19937 g(13);
  std::uniform_int_distribution<uint32_t> u(0, 0x3f7fffffu);  // every float in [0, 1) equally likely by bit pattern
  for (int i = 0; i < 2000000; ++i) check(drl_bits_float(u(g)));
  std::printf("drl_rng_sincos2pi: max abs error %.3g vs double over general floats in [0, 1) (worst v = %a)\n",
              max_err, worst);
  EXPECT_LT(max_err, 2e-7) << "at v = " << worst;
  // v = 1 (which frac of a negative product can round to) is a full turn, exactly.
  float s0, c0;
  drl_rng_sincos2pi(1.0f, &s0, &c0);
  EXPECT_EQ(bits(s0), bits(0.0f));
  EXPECT_EQ(c0, 1.0f);
  // The one inexact reduction gives the value at 0.125.
  float s1, c1, s2, c2;
  drl_rng_sincos2pi(0.125f - 0x1p-27f, &s1, &c1);
  drl_rng_sincos2pi(0.125f, &s2, &c2);
  EXPECT_EQ(bits(s1), bits(s2));
  EXPECT_EQ(bits(c1), bits(c2));
}

// ================================================================ time embedding

// Against double sin / cos twice: of the fraction v the header defines (the float product freq t, its fraction in
// float), within 1e-6; and of the exact angle 2 pi freq t, within 1e-6 plus what the float product (half an ulp of p)
// and, for p < 0, the float fraction (half an ulp of 1) lose.
TEST(FlowTimeEmbed, MatchesDoubleSinCos) {
  drl_device cpu = cpu_device();
  for (auto [half, maxf] : std::vector<std::pair<int, double>>{{1, 16.0}, {3, 16.0}, {8, 16.0}, {16, 1000.0}}) {
    std::vector<float> freq(half);
    drl_time_embed_freqs(freq.data(), half, maxf);
    std::vector<float> t = {0.0f,  1.0f,      0.5f,   0.25f, 0.125f, 1e-8f, -1e-8f, -0x1p-30f,
                            1e-7f, 0.999999f, 1.5f,   -1.0f};
    auto r = random_uniform(2000, 20 + half, -1.0f, 1.5f);
    t.insert(t.end(), r.begin(), r.end());
    const int64_t rows = (int64_t)t.size();
    std::vector<float> out((size_t)rows * 2 * half);
    ASSERT_EQ(drl_time_embed(&cpu, out.data(), t.data(), freq.data(), rows, half), DRL_OK) << last_error();
    double worst = 0.0, worst_exact = 0.0;
    for (int64_t i = 0; i < rows; ++i)
      for (int k = 0; k < half; ++k) {
        volatile float p = freq[k] * t[i];
        volatile float v = p - std::floor(p);
        double a = 2.0 * kPi * (double)v;
        float gs = out[(size_t)i * 2 * half + 2 * k], gc = out[(size_t)i * 2 * half + 2 * k + 1];
        double e = std::max(std::fabs(gs - std::sin(a)), std::fabs(gc - std::cos(a)));
        worst = std::max(worst, e);
        ASSERT_LT(e, 1e-6) << "t " << t[i] << " freq " << freq[k] << ": sin " << gs << " cos " << gc;
        double af = 2.0 * kPi * (double)freq[k] * (double)t[i];
        double lost_turns = 0.5 * ulp(std::fabs(p)) + (p < 0.0f ? 0x1p-25 : 0.0);
        double ef = std::max(std::fabs(gs - std::sin(af)), std::fabs(gc - std::cos(af)));
        worst_exact = std::max(worst_exact, ef);
        ASSERT_LT(ef, 1e-6 + 2.0 * kPi * lost_turns) << "t " << t[i] << " freq " << freq[k];
      }
    std::printf("time embed half %d: max abs error %.3g vs double sin/cos of the float fraction, %.3g vs the exact "
                "angle\n",
                half, worst, worst_exact);
    RecordProperty("time_embed_worst_abs_error_half_" + std::to_string(half), sci(worst));
    // t = 0: exactly (0, 1) for every frequency.
    for (int k = 0; k < half; ++k) {
      EXPECT_EQ(bits(out[2 * k]), bits(0.0f));
      EXPECT_EQ(out[2 * k + 1], 1.0f);
    }
  }
}

TEST(FlowTimeEmbed, NegativeHugeAndNonFiniteTimes) {
  drl_device cpu = cpu_device();
  float freq[2] = {1.0f, 3.0f};
  float t[7] = {-0x1p-30f, -0.25f, -0.0f, 0x1p24f, kNaN, kInf, -kInf};
  float out[28];
  ASSERT_EQ(drl_time_embed(&cpu, out, t, freq, 7, 2), DRL_OK);
  auto sin_of = [&](int row, int k) { return out[row * 4 + 2 * k]; };
  auto cos_of = [&](int row, int k) { return out[row * 4 + 2 * k + 1]; };
  for (int k = 0; k < 2; ++k) {
    // frac(-freq 2^-30) = 1 - freq 2^-30 rounds to 1: a full turn, (+0, 1) exactly (sin(2 pi (-2^-30)) = -5.9e-9).
    EXPECT_EQ(bits(sin_of(0, k)), bits(0.0f)) << "freq " << freq[k];
    EXPECT_EQ(cos_of(0, k), 1.0f) << "freq " << freq[k];
    // t = -0 is t = 0; |freq t| >= 2^23 has no fraction bits: angle 0.
    EXPECT_EQ(bits(sin_of(2, k)), bits(0.0f)) << "freq " << freq[k];
    EXPECT_EQ(cos_of(2, k), 1.0f) << "freq " << freq[k];
    EXPECT_EQ(bits(sin_of(3, k)), bits(0.0f)) << "freq " << freq[k];
    EXPECT_EQ(cos_of(3, k), 1.0f) << "freq " << freq[k];
  }
  // t = -0.25: v = 0.75 (freq 1) and 0.25 (freq 3).
  EXPECT_NEAR(sin_of(1, 0), -1.0f, 1e-7f);
  EXPECT_NEAR(cos_of(1, 0), 0.0f, 1e-7f);
  EXPECT_NEAR(sin_of(1, 1), 1.0f, 1e-7f);
  EXPECT_NEAR(cos_of(1, 1), 0.0f, 1e-7f);
  // NaN and +-inf times give NaN features (never a number).
  for (int i = 16; i < 28; ++i) EXPECT_TRUE(std::isnan(out[i])) << "feature " << i;
}

TEST(FlowTimeEmbed, GeometricFrequencies) {
  for (auto [half, maxf] : std::vector<std::pair<int, double>>{{8, 16.0}, {5, 1000.0}, {2, 4.0}, {16, 64.0}}) {
    std::vector<float> f(half);
    drl_time_embed_freqs(f.data(), half, maxf);
    EXPECT_EQ(f[0], 1.0f);
    EXPECT_EQ(f[half - 1], (float)maxf);
    double ratio = std::pow(maxf, 1.0 / (half - 1));
    for (int k = 0; k + 1 < half; ++k) {
      EXPECT_GT(f[k + 1], f[k]);
      EXPECT_NEAR((double)f[k + 1] / f[k], ratio, 2e-7 * ratio) << "half " << half << " k " << k;
      EXPECT_NEAR(f[k], std::pow(maxf, (double)k / (half - 1)), 0.6 * ulp(f[k]));
    }
  }
  float one[1] = {-5.0f};
  drl_time_embed_freqs(one, 1, 16.0);
  EXPECT_EQ(one[0], 1.0f);
  drl_time_embed_freqs(nullptr, 4, 16.0);  // ignored, no crash
  drl_time_embed_freqs(one, 0, 16.0);
  EXPECT_EQ(one[0], 1.0f);
}

TEST(FlowTimeEmbed, RejectsBadArguments) {
  drl_device cpu = cpu_device();
  float t[2] = {0.1f, 0.2f}, f[2] = {1, 2}, out[8];
  EXPECT_EQ(drl_time_embed(&cpu, out, t, f, -1, 2), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("drl_time_embed");
  EXPECT_EQ(drl_time_embed(&cpu, out, t, f, 2, 0), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("half=0");
  EXPECT_EQ(drl_time_embed(&cpu, out, nullptr, f, 2, 2), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("NULL buffer");
  EXPECT_EQ(drl_time_embed(&cpu, out, t, nullptr, 2, 2), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_time_embed(&cpu, out, t, f, INT64_MAX / 2, 2), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("overflows");
  EXPECT_EQ(drl_time_embed(&cpu, nullptr, nullptr, nullptr, 0, 2), DRL_OK);
}

// ================================================================ log

// drl_rng_logf on every positive normal float (not only (0, 1]): an exhaustive run over all 2,122,317,824 of them
// found at most 1 ulp from the correctly rounded log (largest absolute error 3.8e-6, at x ~ 2^122, where the ulp of
// log x is 7.6e-6). Here: every 97th float.
TEST(FlowLogf, WithinOneUlpOfTheCorrectlyRoundedLogForPositiveNormalFloats) {
  int64_t max_ulp = 0;
  float worst = 0.0f;
  for (uint32_t b = 0x00800000u; b < 0x7f800000u; b += 97) {
    float x = drl_bits_float(b);
    float got = drl_rng_logf(x), want = (float)std::log((double)x);
    int64_t d = (got == want) ? 0 : (std::signbit(got) != std::signbit(want) ? 1000 : ulp_diff(got, want));
    if (d > max_ulp) max_ulp = d, worst = x;
  }
  std::printf("drl_rng_logf: max %lld ulp vs the correctly rounded log over every 97th positive normal float "
              "(worst x = %a)\n",
              (long long)max_ulp, worst);
  EXPECT_LE(max_ulp, 1) << "at x = " << worst;
  EXPECT_EQ(drl_rng_logf(1.0f), 0.0f);
  EXPECT_EQ(drl_rng_logf(FLT_MAX), (float)std::log((double)FLT_MAX));
  EXPECT_EQ(drl_rng_logf(FLT_MIN), (float)std::log((double)FLT_MIN));
}

// ================================================================ SDE: sigma and the time grid

TEST(FlowSde, SigmaIsTheFlowGrpoFormulaCappedAtTheFirstStep) {
  // sigma = a g sqrt(t / (1 - min(t, t_cap))): a few float roundings of the double value.
  const float t1 = 0.975f;
  for (float a : {0.0f, 0.3f, 0.7f, 1.5f})
    for (float g : {1.0f, 1.25f, 2.0f})
      for (float t : {0.0f, 1e-6f, 0.025f, 0.3f, 0.5f, 0.9f, 0.975f, 0.98f, 0.999f, 1.0f}) {
        double tc = std::min((double)t, (double)t1);
        double want = (double)a * g * std::sqrt((double)t / (1.0 - tc));
        EXPECT_NEAR(drl_sde_sigma(a, g, t, t1), want, 4e-7 * want) << "a " << a << " g " << g << " t " << t;
      }
  // t == 1 (the first step): 1 - t would be 0; Flow-GRPO uses 1 - t_1 in the denominator, sqrt(1 / (1 - t_1)).
  EXPECT_NEAR(drl_sde_sigma(0.7f, 1.0f, 1.0f, t1), 0.7 * std::sqrt(1.0 / (1.0 - (double)t1)), 4e-7 * 4.43);
  EXPECT_NEAR(drl_sde_sigma(0.7f, 2.0f, 1.0f, 0.9f), 1.4 * std::sqrt(1.0 / (1.0 - (double)0.9f)), 4e-7 * 4.43);
  EXPECT_TRUE(std::isfinite(drl_sde_sigma(1.5f, 2.0f, 1.0f, t1)));
  EXPECT_EQ(drl_sde_sigma(0.7f, 1.0f, 0.0f, t1), 0.0f);
  EXPECT_EQ(drl_sde_sigma(0.0f, 1.0f, 1.0f, t1), 0.0f);
  // On a grid (t_0 = 1, every later t_k < t_1) the cap touches only the first step, exactly as Flow-GRPO's
  // where(t == 1, t_1, t).
  for (int T : {10, 40}) {
    std::vector<float> grid(T + 1);
    drl_time_grid(grid.data(), T, 3.0f);
    for (int k = 0; k < T; ++k) {
      double den = 1.0 - (k == 0 ? (double)grid[1] : (double)grid[k]);
      double want = 0.7 * std::sqrt((double)grid[k] / den);
      EXPECT_NEAR(drl_sde_sigma(0.7f, 1.0f, grid[k], grid[1]), want, 4e-7 * want) << "T " << T << " k " << k;
    }
  }
}

TEST(FlowSde, TimeGridIsUniformInKThenShifted) {
  for (int T : {1, 2, 10, 40}) {
    std::vector<float> g1(T + 1), g3(T + 1);
    drl_time_grid(g1.data(), T, 1.0f);
    drl_time_grid(g3.data(), T, 3.0f);
    for (const auto *g : {&g1, &g3}) {
      EXPECT_EQ((*g)[0], 1.0f);
      EXPECT_EQ((*g)[T], 0.0f);
      for (int k = 0; k < T; ++k) EXPECT_GT((*g)[k], (*g)[k + 1]) << "T " << T << " k " << k;
    }
    for (int k = 0; k <= T; ++k) {
      double u = 1.0 - (double)k / T;
      EXPECT_EQ(g1[k], (float)u) << "shift 1 is the uniform grid, k " << k;
      EXPECT_EQ(g3[k], (float)(3.0 * u / (1.0 + 2.0 * u))) << "T " << T << " k " << k;
      if (k > 0 && k < T) {
        EXPECT_GT(g3[k], g1[k]) << "shift > 1 stays nearer the noise, k " << k;
      }
    }
  }
}

// ================================================================ SDE: the step

TEST(FlowSde, ZeroSigmaRowsAreEulerOdeStepsWithLogpZeroAndNoGradient) {
  drl_device cpu = cpu_device();
  for (int D : {1, 2, 5}) {
    const int64_t rows = 300;
    SdeBatch b = make_batch(rows, D, 40 + D);
    std::fill(b.sigma.begin(), b.sigma.end(), 0.0f);
    // Two different noise indices per row: an ODE row's index must not matter.
    std::vector<uint64_t> other(rows);
    for (int64_t r = 0; r < rows; ++r) other[r] = ~0ull - 3 * (uint64_t)r;
    std::vector<float> xn((size_t)rows * D), lp(rows, 123.0f), xn2((size_t)rows * D);
    ASSERT_EQ(drl_sde_step(&cpu, xn.data(), lp.data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(),
                           b.sigma.data(), b.noise.data(), kStream, rows, D, 1),
              DRL_OK)
        << last_error();
    ASSERT_EQ(drl_sde_step(&cpu, xn2.data(), nullptr, b.x.data(), b.v.data(), b.t.data(), b.dt.data(),
                           b.sigma.data(), other.data(), kStream, rows, D, 0),
              DRL_OK)
        << last_error();
    EXPECT_EQ(first_diff(xn, xn2), -1) << "an ODE row depends on its noise index or on the reduction";
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_EQ(lp[r], 0.0f) << "row " << r;
      for (int d = 0; d < D; ++d) {
        size_t i = (size_t)r * D + d;
        // x + v dt: the float product, then the float sum (each correctly rounded; exact in double first).
        float vdt = (float)((double)b.v[i] * (double)b.dt[r]);
        float want = (float)((double)b.x[i] + (double)vdt);
        ASSERT_EQ(bits(xn[i]), bits(want)) << "D " << D << " row " << r << " dim " << d;
      }
    }
    // The evaluation side agrees: an ODE row has log-probability 0 and passes no gradient.
    std::vector<float> lp2(rows, 5.0f), dv((size_t)rows * D, 0.25f);
    std::vector<float> dlogp(rows, 1.0f);
    ASSERT_EQ(drl_sde_logprob(&cpu, lp2.data(), xn.data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(),
                              b.sigma.data(), rows, D, 1),
              DRL_OK);
    ASSERT_EQ(drl_sde_logprob_backward(&cpu, dv.data(), dlogp.data(), xn.data(), b.x.data(), b.v.data(), b.t.data(),
                                       b.dt.data(), b.sigma.data(), rows, D, 1),
              DRL_OK);
    for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(lp2[r], 0.0f);
    for (float g : dv) ASSERT_EQ(g, 0.25f);
  }
}

TEST(FlowSde, StepMayAliasXOrV) {
  drl_device cpu = cpu_device();
  for (int D : {3, 33, 100}) {
    const int64_t rows = 200;
    SdeBatch b = make_batch(rows, D, 50 + D, 3);
    std::vector<float> xn((size_t)rows * D), lp(rows), lpx(rows), lpv(rows);
    ASSERT_EQ(drl_sde_step(&cpu, xn.data(), lp.data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(), b.sigma.data(),
                           b.noise.data(), kStream, rows, D, 1),
              DRL_OK);
    auto x = b.x, v = b.v;
    ASSERT_EQ(drl_sde_step(&cpu, x.data(), lpx.data(), x.data(), b.v.data(), b.t.data(), b.dt.data(), b.sigma.data(),
                           b.noise.data(), kStream, rows, D, 1),
              DRL_OK);
    ASSERT_EQ(drl_sde_step(&cpu, v.data(), lpv.data(), b.x.data(), v.data(), b.t.data(), b.dt.data(), b.sigma.data(),
                           b.noise.data(), kStream, rows, D, 1),
              DRL_OK);
    EXPECT_EQ(first_diff(x, xn), -1) << "x_next == x, D " << D;
    EXPECT_EQ(first_diff(v, xn), -1) << "x_next == v, D " << D;
    EXPECT_EQ(first_diff(lpx, lp), -1) << "D " << D;
    EXPECT_EQ(first_diff(lpv, lp), -1) << "D " << D;
  }
}

// x_next = mean + sigma sqrt(-dt) eps with eps = drl_rng_normal(stream, noise_index * D + d): within float rounding of
// the research note's mean in double, and bit for bit the header's float ops on the same eps.
TEST(FlowSde, SampleIsTheMeanPlusTheAddressedNoise) {
  drl_device cpu = cpu_device();
  for (int D : {1, 2, 3, 8}) {
    const int64_t rows = 400;
    SdeBatch b = make_batch(rows, D, 60 + D, /*ode_every=*/5);
    std::vector<float> xn((size_t)rows * D), lp(rows);
    ASSERT_EQ(drl_sde_step(&cpu, xn.data(), lp.data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(),
                           b.sigma.data(), b.noise.data(), kStream, rows, D, 1),
              DRL_OK)
        << last_error();
    double worst = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      double t = b.t[r], dt = b.dt[r], s = b.sigma[r], kk = s * s / (2 * t);
      for (int d = 0; d < D; ++d) {
        size_t i = (size_t)r * D + d;
        double x = b.x[i], v = b.v[i];
        double mu = sde_mu_d(x, v, t, dt, s);
        float epsf = drl_rng_normal(kStream.seed, kStream.step, kStream.tag, b.noise[r] * D + d);
        double eps = s > 0 ? (double)epsf : 0.0;
        double noise = s * std::sqrt(-dt) * eps;
        double want = mu + noise;
        // Float rounding: a few ulps of each term of the sum.
        double M = std::fabs(x) + std::fabs(v * dt) + std::fabs(kk * dt * x) + std::fabs(kk * (1 - t) * dt * v) +
                   std::fabs(noise);
        worst = std::max(worst, std::fabs(xn[i] - want) / M);
        ASSERT_NEAR(xn[i], want, 1e-6 * M) << "D " << D << " row " << r << " dim " << d << " t " << t << " sigma "
                                            << s;
        if (s > 0) {
          volatile float sd = b.sigma[r] * std::sqrt(-b.dt[r]);
          volatile float scaled = sd * epsf;
          volatile float bitwise = drl_sde_mean_elem(b.x[i], b.v[i], b.t[r], b.dt[r], b.sigma[r]) + scaled;
          ASSERT_EQ(bits(xn[i]), bits(bitwise)) << "D " << D << " row " << r << " dim " << d;
        }
      }
      if (b.sigma[r] == 0.0f) {
        EXPECT_EQ(lp[r], 0.0f);
      }
    }
    RecordProperty("sde_sample_worst_relative_error_D" + std::to_string(D), sci(worst));
  }
}

// The noise of a row depends on its noise index alone: permuting rows permutes the outputs bit for bit, equal indices
// draw equal noise, another index or another step of the stream draws other noise.
TEST(FlowSde, NoiseIsAddressedByTheRowsIndexOnly) {
  const int D = 3;
  SdeBatch b = make_batch(500, D, 100, 7);
  drl_rng_stream s = {99, 7, drl_rng_tag(DRL_RNG_SDE, 2, 1)};
  StepOut o = run_step(b, s, 1);
  std::vector<int64_t> perm(b.rows);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(101));
  SdeBatch p = b;
  for (int64_t r = 0; r < b.rows; ++r) {
    int64_t q = perm[r];
    for (int d = 0; d < D; ++d) p.x[r * D + d] = b.x[q * D + d], p.v[r * D + d] = b.v[q * D + d];
    p.t[r] = b.t[q], p.dt[r] = b.dt[q], p.sigma[r] = b.sigma[q], p.noise[r] = b.noise[q];
  }
  StepOut op = run_step(p, s, 1);
  for (int64_t r = 0; r < b.rows; ++r) {
    int64_t q = perm[r];
    ASSERT_EQ(bits(op.logp[r]), bits(o.logp[q])) << r;
    for (int d = 0; d < D; ++d) ASSERT_EQ(bits(op.xn[r * D + d]), bits(o.xn[q * D + d])) << r << "," << d;
  }
  // Two rows with the same index and inputs draw the same; another index, or another step of the stream, differs.
  SdeBatch two = make_batch(3, D, 102);
  for (int d = 0; d < D; ++d) two.x[D + d] = two.x[d], two.v[D + d] = two.v[d], two.x[2 * D + d] = two.x[d],
                               two.v[2 * D + d] = two.v[d];
  two.t[1] = two.t[2] = two.t[0], two.dt[1] = two.dt[2] = two.dt[0], two.sigma[1] = two.sigma[2] = two.sigma[0];
  two.noise[1] = two.noise[0];
  two.noise[2] = two.noise[0] + 1;
  StepOut ot = run_step(two, s, 0);
  drl_rng_stream s2 = s;
  s2.step += 1;
  StepOut os = run_step(two, s2, 0);
  for (int d = 0; d < D; ++d) {
    EXPECT_EQ(bits(ot.xn[D + d]), bits(ot.xn[d]));
    EXPECT_NE(bits(ot.xn[2 * D + d]), bits(ot.xn[d]));
    EXPECT_NE(bits(os.xn[d]), bits(ot.xn[d]));
  }
}

// Over many draws the residual (x_next - mean) / (sigma sqrt(-dt)) is standard normal: mean 0, variance 1 (the sampling
// std is sigma sqrt(-dt)), fourth moment 3, uncorrelated across the dims of a row, adjacent elements and stream steps;
// and the log-density's quadratic term averages 1/2 per dimension (it would not if the density used another std).
TEST(FlowSde, NoiseIsStandardNormalIndependentAndHasTheDensitysStd) {
  const int64_t rows = 60000;
  const int D = 2;
  const float t0 = 0.7f, dt0 = -0.1f, sigma0 = drl_sde_sigma(0.7f, 1.0f, t0, 0.9f), x0 = 0.3f, v0 = -1.2f;
  std::vector<float> x((size_t)rows * D, x0), v((size_t)rows * D, v0), t(rows, t0), dt(rows, dt0), sigma(rows, sigma0);
  std::vector<uint64_t> idx(rows);
  std::iota(idx.begin(), idx.end(), 0ull);
  std::vector<float> a((size_t)rows * D), b((size_t)rows * D), lp(rows);
  drl_rng_stream s0 = kStream, s1 = kStream;
  s1.step += 1;
  ASSERT_EQ(drl_sde_step_cpu(a.data(), lp.data(), x.data(), v.data(), t.data(), dt.data(), sigma.data(), idx.data(), s0,
                             rows, D, 1),
            DRL_OK);
  ASSERT_EQ(drl_sde_step_cpu(b.data(), nullptr, x.data(), v.data(), t.data(), dt.data(), sigma.data(), idx.data(), s1,
                             rows, D, 1),
            DRL_OK);
  const double mu = drl_sde_mean_elem(x0, v0, t0, dt0, sigma0);
  const double sd = (double)sigma0 * std::sqrt(-(double)dt0);
  const double n = (double)rows * D;
  double m1 = 0, m2 = 0, m4 = 0, c_dims = 0, c_rows = 0, c_steps = 0, quad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    // With mean_over_dims, -(logp + log sd + log(2 pi) / 2) is the mean over the row's dims of e^2 / 2.
    quad += -(lp[r] + std::log(sd) + 0.5 * std::log(2 * kPi));
    for (int d = 0; d < D; ++d) {
      size_t i = (size_t)r * D + d;
      double e = (a[i] - mu) / sd, f = (b[i] - mu) / sd;
      m1 += e;
      m2 += e * e;
      m4 += e * e * e * e;
      c_steps += e * f;
      if (d == 0) c_dims += e * ((a[i + 1] - mu) / sd);
      if (r + 1 < rows) c_rows += e * ((a[i + D] - mu) / sd);
    }
  }
  m1 /= n;
  m2 /= n;
  m4 /= n;
  c_dims /= rows;
  c_rows /= n - D;
  c_steps /= n;
  quad /= rows;
  // Standard errors: mean 1/sqrt(n) = 0.0029, variance sqrt(2/n) = 0.0041, 4th moment sqrt(96/n) = 0.028,
  // correlations 1/sqrt(n) (rows: 0.0041 for the dims pair), the quadratic term sqrt(1/4 / rows) = 0.002; the bounds
  // are ~5 standard errors.
  std::printf("sde noise: mean %.4f, variance %.4f (std %.5f vs sigma sqrt(-dt) = %.5f), 4th moment %.3f; mean "
              "quadratic term of logp %.4f (1/2 expected)\n",
              m1, m2, std::sqrt(m2) * sd, sd, m4, quad);
  EXPECT_NEAR(m1, 0.0, 0.015);
  EXPECT_NEAR(m2, 1.0, 0.02);
  EXPECT_NEAR(m4, 3.0, 0.15);
  EXPECT_NEAR(c_dims, 0.0, 0.02) << "the two dims of a row (a Box-Muller pair)";
  EXPECT_NEAR(c_rows, 0.0, 0.015) << "adjacent noise elements";
  EXPECT_NEAR(c_steps, 0.0, 0.015) << "two stream steps";
  EXPECT_NEAR(quad, 0.5, 0.01);
  RecordProperty("noise_mean", sci(m1));
  RecordProperty("noise_var", sci(m2));
}

TEST(FlowSde, StepLogpEqualsTrainingLogprobBitForBit) {
  drl_device cpu = cpu_device();
  for (int D : {1, 2, 7})
    for (int mean : {1, 0}) {
      const int64_t rows = 500;
      SdeBatch b = make_batch(rows, D, 80 + D);
      std::vector<float> xn((size_t)rows * D), lp(rows), lp2(rows);
      ASSERT_EQ(drl_sde_step(&cpu, xn.data(), lp.data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(),
                             b.sigma.data(), b.noise.data(), kStream, rows, D, mean),
                DRL_OK);
      ASSERT_EQ(drl_sde_logprob(&cpu, lp2.data(), xn.data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(),
                                b.sigma.data(), rows, D, mean),
                DRL_OK)
          << last_error();
      // An unchanged policy: log pi_new - log pi_old = 0 exactly, ratio exactly 1.
      EXPECT_EQ(first_diff(lp, lp2), -1) << "D " << D << " mean " << mean;
      for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(std::exp(lp2[r] - lp[r]), 1.0f);
    }
}

// ---- SDE: the 32-lane order of the sum over d

namespace {

uint64_t dbits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
}

// The dims of the lane-order tests: one lane, fewer than 32, a warp exactly, one past it, and tails of every length.
const int kLaneDims[] = {1, 2, 3, 7, 31, 32, 33, 63, 64, 65, 100, 257};

// sum over d of (x_next - mean)^2 in the order sde.h documents, written out from it: 32 lane partials in double,
// lane l adding d = l, l + 32, ... in order, then p[i] += p[i + o] for o = 16, 8, 4, 2, 1.
double lane_order_sumsq(const float *xn, const float *mean, int D) {
  double p[32] = {};
  for (int d = 0; d < D; ++d) {
    volatile double e = (double)xn[d] - (double)mean[d];  // volatile: each op rounded on its own, no FMA
    volatile double sq = e * e;
    p[d % 32] += sq;
  }
  for (int o = 16; o >= 1; o /= 2)
    for (int i = 0; i < o; ++i) p[i] += p[i + o];
  return p[0];
}

// Two orders that are not it, so a test can show that its inputs tell them apart: d order, and the lane partials
// added left to right.
double d_order_sumsq(const float *xn, const float *mean, int D) {
  double s = 0.0;
  for (int d = 0; d < D; ++d) {
    volatile double e = (double)xn[d] - (double)mean[d];
    volatile double sq = e * e;
    s += sq;
  }
  return s;
}

double lanes_left_to_right_sumsq(const float *xn, const float *mean, int D) {
  double p[32] = {};
  for (int d = 0; d < D; ++d) {
    volatile double e = (double)xn[d] - (double)mean[d];
    volatile double sq = e * e;
    p[d % 32] += sq;
  }
  double s = 0.0;
  for (int l = 0; l < 32; ++l) s += p[l];
  return s;
}

// The row means of a batch, from the header's per-element math (the order, not the mean, is under test here).
std::vector<float> row_means(const SdeBatch &b) {
  std::vector<float> mu(b.x.size());
  for (int64_t r = 0; r < b.rows; ++r)
    for (int d = 0; d < b.D; ++d) {
      size_t i = (size_t)r * b.D + d;
      mu[i] = drl_sde_mean_elem(b.x[i], b.v[i], b.t[r], b.dt[r], b.sigma[r]);
    }
  return mu;
}

}  // namespace

// The evaluator's sum over d is the documented 32-lane order, bit for bit in double, on residuals of widely mixed
// magnitude (sd u 2^(8 (d % 3)), u of both signs) whose sum rounds differently in d order or with the lanes added left
// to right; its logp is drl_sde_logp_finish of that sum.
TEST(FlowSde, RowSumRunsInTheDocumentedLaneOrder) {
  for (int D : kLaneDims) {
    const int64_t rows = 96;
    SdeBatch b = make_batch(rows, D, 200 + D, /*ode_every=*/11);
    std::vector<float> mu = row_means(b), xn(b.x.size());
    auto u = random_uniform(b.x.size(), 300 + D, -2.0f, 2.0f);
    for (int64_t r = 0; r < rows; ++r) {
      const double sd = b.sigma[r] > 0.0f ? (double)drl_sde_std(b.sigma[r], b.dt[r]) : 1.0;
      for (int d = 0; d < D; ++d) {
        size_t i = (size_t)r * D + d;
        xn[i] = (float)((double)mu[i] + sd * std::ldexp((double)u[i], 8 * (d % 3)));
      }
    }
    std::vector<float> lp_sum = run_logprob(b, xn, 0), lp_mean = run_logprob(b, xn, 1);
    int differs_d_order = 0, differs_left_to_right = 0, sde_rows = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const size_t o = (size_t)r * D;
      if (b.sigma[r] == 0.0f) {
        EXPECT_EQ(bits(lp_sum[r]), bits(0.0f)) << "ODE row " << r;
        EXPECT_EQ(bits(lp_mean[r]), bits(0.0f)) << "ODE row " << r;
        continue;
      }
      ++sde_rows;
      const double want = lane_order_sumsq(&xn[o], &mu[o], D);
      // The header's lanes and tree, as the CPU row and the GPU warp run them.
      double p[DRL_LANES];
      for (int l = 0; l < DRL_LANES; ++l)
        p[l] = drl_sde_lane(&xn[o], &b.x[o], &b.v[o], b.t[r], b.dt[r], b.sigma[r], nullptr, 0, D, l);
      ASSERT_EQ(dbits(drl_lane_tree_d(p)), dbits(want)) << "D " << D << " row " << r;
      const float sd = drl_sde_std(b.sigma[r], b.dt[r]);
      ASSERT_EQ(bits(lp_sum[r]), bits(drl_sde_logp_finish(want, sd, D, 0))) << "D " << D << " row " << r;
      ASSERT_EQ(bits(lp_mean[r]), bits(drl_sde_logp_finish(want, sd, D, 1))) << "D " << D << " row " << r;
      differs_d_order += dbits(d_order_sumsq(&xn[o], &mu[o], D)) != dbits(want);
      differs_left_to_right += dbits(lanes_left_to_right_sumsq(&xn[o], &mu[o], D)) != dbits(want);
    }
    if (D <= 2) {  // one add at most: every order agrees
      EXPECT_EQ(differs_d_order, 0) << "D " << D;
      EXPECT_EQ(differs_left_to_right, 0) << "D " << D;
    } else {  // the inputs would catch another order
      EXPECT_GT(differs_d_order, sde_rows / 8) << "D " << D;
      EXPECT_GT(differs_left_to_right, sde_rows / 8) << "D " << D;
    }
  }
}

// The sampler's logp is drl_sde_logp_finish of the documented lane-order sum over its own x_next, and equals the
// training pass's drl_sde_logprob of that x_next bit for bit (an on-policy ratio of exactly 1) for every D; every
// element, in the lane tails too, is the mean plus sd times its addressed noise.
TEST(FlowSde, SampledLogpIsTheLaneOrderSumAndTheTrainingLogprob) {
  for (int D : kLaneDims)
    for (int mean : {1, 0}) {
      const int64_t rows = 120;
      SdeBatch b = make_batch(rows, D, 400 + D, /*ode_every=*/7);
      StepOut o = run_step(b, kStream, mean);
      std::vector<float> lp2 = run_logprob(b, o.xn, mean), mu = row_means(b);
      EXPECT_EQ(first_diff(o.logp, lp2), -1) << "D " << D << " mean " << mean;
      for (int64_t r = 0; r < rows; ++r) {
        const size_t off = (size_t)r * D;
        if (b.sigma[r] == 0.0f) {
          EXPECT_EQ(bits(o.logp[r]), bits(0.0f)) << "ODE row " << r;
          for (int d = 0; d < D; ++d) ASSERT_EQ(bits(o.xn[off + d]), bits(mu[off + d])) << "D " << D << " row " << r;
          continue;
        }
        const float sd = drl_sde_std(b.sigma[r], b.dt[r]);
        for (int d = 0; d < D; ++d) {
          volatile float scaled = sd * drl_rng_normal(kStream.seed, kStream.step, kStream.tag, b.noise[r] * D + d);
          volatile float want = mu[off + d] + scaled;
          ASSERT_EQ(bits(o.xn[off + d]), bits(want)) << "D " << D << " row " << r << " dim " << d;
        }
        const double sumsq = lane_order_sumsq(&o.xn[off], &mu[off], D);
        ASSERT_EQ(bits(o.logp[r]), bits(drl_sde_logp_finish(sumsq, sd, D, mean)))
            << "D " << D << " mean " << mean << " row " << r;
        EXPECT_EQ(std::exp(lp2[r] - o.logp[r]), 1.0f);
      }
    }
}

// The log-density against the Gaussian formula in double, summed and averaged over dims: to float rounding with the
// kernel's own float means, and within the float rounding of the mean with the research note's mean in double; at
// x_next = mean, the Gaussian's peak.
TEST(FlowSde, LogDensityMatchesDoubleGaussian) {
  for (int D : {1, 2, 3, 16, 64}) {
    const int64_t rows = 1000;
    SdeBatch b = make_batch(rows, D, 100 + D, 7);
    StepOut o_mean = run_step(b, kStream, 1), o_sum = run_step(b, kStream, 0);
    EXPECT_TRUE(same_bits(o_mean.xn, o_sum.xn)) << "the sample does not depend on the log-probability's reduction";
    double worst_own = 0.0, worst_note = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      if (b.sigma[r] == 0.0f) continue;  // ODE rows: FlowSde.ZeroSigmaRowsAreEulerOdeSteps...
      const double t = b.t[r], dt = b.dt[r], s = b.sigma[r], var = s * s * -dt;
      double own = 0.0, note = 0.0, mag = 0.0;
      for (int d = 0; d < D; ++d) {
        size_t i = (size_t)r * D + d;
        const double y = o_sum.xn[i];
        const double mu_f = drl_sde_mean_elem(b.x[i], b.v[i], b.t[r], b.dt[r], b.sigma[r]);
        const double res = y - sde_mu_d(b.x[i], b.v[i], t, dt, s);
        const double norm = 0.5 * std::log(var) + 0.5 * std::log(2 * kPi);
        own += -(y - mu_f) * (y - mu_f) / (2 * var) - norm;
        const double term = -res * res / (2 * var) - norm;
        note += term;
        mag += std::fabs(term) + res * res / (2 * var) + 1.0;
      }
      worst_own = std::max(worst_own, std::fabs(o_sum.logp[r] - own) / std::max(1.0, std::fabs(own)));
      worst_note = std::max(worst_note, std::fabs(o_sum.logp[r] - note) / mag);
      ASSERT_LT(std::fabs(o_sum.logp[r] - own), 4e-6 * std::max(1.0, std::fabs(own))) << "sum: D " << D << " row " << r;
      ASSERT_LT(std::fabs(o_mean.logp[r] - own / D), 4e-6 * std::max(1.0, std::fabs(own / D)))
          << "mean: D " << D << " row " << r;
      EXPECT_NEAR(o_sum.logp[r], note, 3e-6 * mag) << "sum: D " << D << " row " << r << " t " << t << " sigma " << s;
      EXPECT_NEAR(o_mean.logp[r], note / D, 3e-6 * mag / D) << "mean: D " << D << " row " << r;
      EXPECT_NEAR(o_sum.logp[r], D * (double)o_mean.logp[r], 1e-6 * (std::fabs(o_sum.logp[r]) + 1.0))
          << "D " << D << " row " << r;
    }
    std::printf("sde logp D=%d: max rel error %.2g vs double with the kernel's float means, %.2g with the note's "
                "double mean\n",
                D, worst_own, worst_note);
    RecordProperty("sde_logp_worst_relative_error_D" + std::to_string(D), sci(worst_note));
  }
  // At x_next = mean the density is the Gaussian's peak, -D (log sd + log(2 pi) / 2).
  SdeBatch b = make_batch(50, 4, 60);
  std::vector<float> mu(b.x.size());
  for (int64_t r = 0; r < b.rows; ++r)
    for (int d = 0; d < 4; ++d)
      mu[r * 4 + d] = drl_sde_mean_elem(b.x[r * 4 + d], b.v[r * 4 + d], b.t[r], b.dt[r], b.sigma[r]);
  std::vector<float> lp = run_logprob(b, mu, 0);
  for (int64_t r = 0; r < b.rows; ++r) {
    double sd = (double)b.sigma[r] * std::sqrt(-(double)b.dt[r]);
    EXPECT_NEAR(lp[r], -4.0 * (std::log(sd) + 0.5 * std::log(2 * kPi)), 2e-6 * (1 + std::fabs(lp[r]))) << r;
  }
}

TEST(FlowSde, LogprobBackwardMatchesFiniteDifferencesAndAccumulates) {
  drl_device cpu = cpu_device();
  // Well conditioned: mid-range t, sigma from the Flow-GRPO formula, steps of 0.05.
  const int D = 3;
  const std::vector<float> ts = {0.95f, 0.8f, 0.6f, 0.5f, 0.35f, 0.2f};
  const int64_t rows = (int64_t)ts.size();
  SdeBatch b = make_batch(rows, D, 120);
  for (int64_t r = 0; r < rows; ++r) {
    b.t[r] = ts[r];
    b.dt[r] = -0.05f;
    b.sigma[r] = drl_sde_sigma(0.7f, 1.0f + 0.2f * r, ts[r], 0.95f);
  }
  std::vector<float> xn((size_t)rows * D), lp(rows);
  ASSERT_EQ(drl_sde_step_cpu(xn.data(), lp.data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(), b.sigma.data(),
                             b.noise.data(), kStream, rows, D, 1),
            DRL_OK);
  // Evaluate at a policy that moved, so the residuals are not just the sampled noise.
  auto v = b.v;
  auto dvshift = random_uniform(v.size(), 121, -0.3f, 0.3f);
  for (size_t i = 0; i < v.size(); ++i) v[i] += dvshift[i];
  auto dlogp = random_uniform((size_t)rows, 122, -2.0f, 2.0f);
  for (int mean : {1, 0}) {
    auto logp_of = [&](const std::vector<float> &vv) {
      std::vector<float> out(rows);
      EXPECT_EQ(drl_sde_logprob_cpu(out.data(), xn.data(), b.x.data(), vv.data(), b.t.data(), b.dt.data(),
                                    b.sigma.data(), rows, D, mean),
                DRL_OK);
      return out;
    };
    // logp is quadratic in v, so the central difference has no truncation error: a large h keeps float noise down.
    const float h = 1e-2f;
    std::vector<double> fd(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      auto vp = v, vm = v;
      vp[i] += h;
      vm[i] -= h;
      auto up = logp_of(vp), dn = logp_of(vm);
      double hh = ((double)vp[i] - (double)vm[i]);  // the perturbation actually applied in float
      double L = 0.0;
      for (int64_t r = 0; r < rows; ++r) L += (double)dlogp[r] * ((double)up[r] - (double)dn[r]);
      fd[i] = L / hh;
    }
    auto dv0 = random_uniform(v.size(), 123 + mean, -1.0f, 1.0f);  // nonzero: the backward adds into dv
    auto dv = dv0;
    ASSERT_EQ(drl_sde_logprob_backward(&cpu, dv.data(), dlogp.data(), xn.data(), b.x.data(), v.data(), b.t.data(),
                                       b.dt.data(), b.sigma.data(), rows, D, mean),
              DRL_OK)
        << last_error();
    std::vector<float> added(v.size());
    for (size_t i = 0; i < v.size(); ++i) added[i] = (float)((double)dv[i] - (double)dv0[i]);
    expect_grad_close(added, fd, mean ? "dv (mean over dims)" : "dv (sum over dims)");
    // And the analytic form in double: dlogp (x' - mu) cv / var (/ D).
    for (int64_t r = 0; r < rows; ++r) {
      double t = b.t[r], dt = b.dt[r], s = b.sigma[r], var = s * s * -dt, kk = s * s / (2 * t);
      double cv = (1 + kk * (1 - t)) * dt;
      for (int d = 0; d < D; ++d) {
        size_t i = (size_t)r * D + d;
        double g = dlogp[r] * ((double)xn[i] - sde_mu_d(b.x[i], v[i], t, dt, s)) * cv / var / (mean ? D : 1);
        EXPECT_NEAR(added[i], g, 1e-5 * (1 + std::fabs(g))) << "row " << r << " dim " << d << " mean " << mean;
      }
    }
  }
}

TEST(FlowSde, StepLogprobAndBackwardIdenticalForAnyThreadCount) {
  const int64_t rows = 12000;  // rows * D over the parallel thresholds
  const int D = 3;
  SdeBatch b = make_batch(rows, D, 140, 4);
  auto dlogp = random_uniform((size_t)rows, 141);
  std::vector<float> xn[2], lp[2], lp2[2], dv[2];
  for (int th : {1, 2})
    with_threads(th, [&] {
      int k = th - 1;
      xn[k].resize((size_t)rows * D);
      lp[k].resize(rows);
      lp2[k].resize(rows);
      dv[k].assign((size_t)rows * D, 0.5f);
      ASSERT_EQ(drl_sde_step_cpu(xn[k].data(), lp[k].data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(),
                                 b.sigma.data(), b.noise.data(), kStream, rows, D, 1),
                DRL_OK);
      ASSERT_EQ(drl_sde_logprob_cpu(lp2[k].data(), xn[k].data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(),
                                    b.sigma.data(), rows, D, 0),
                DRL_OK);
      ASSERT_EQ(drl_sde_logprob_backward_cpu(dv[k].data(), dlogp.data(), xn[k].data(), b.x.data(), b.v.data(),
                                             b.t.data(), b.dt.data(), b.sigma.data(), rows, D, 0),
                DRL_OK);
    });
  EXPECT_TRUE(same_bits(xn[0], xn[1]));
  EXPECT_TRUE(same_bits(lp[0], lp[1]));
  EXPECT_TRUE(same_bits(lp2[0], lp2[1]));
  EXPECT_TRUE(same_bits(dv[0], dv[1]));
}

TEST(FlowSde, RejectsBadArguments) {
  drl_device cpu = cpu_device();
  float x[4] = {0}, v[4] = {0}, t[2] = {0.5f, 0.5f}, dt[2] = {-0.1f, -0.1f}, s[2] = {0.5f, 0.5f}, out[4], lp[2];
  uint64_t q[2] = {0, 1};
  EXPECT_EQ(drl_sde_step(&cpu, out, lp, x, v, t, dt, s, q, kStream, -1, 2, 1), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("drl_sde_step");
  EXPECT_EQ(drl_sde_step(&cpu, out, lp, x, v, t, dt, s, q, kStream, 2, 0, 1), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("D=0");
  EXPECT_EQ(drl_sde_step(&cpu, out, lp, nullptr, v, t, dt, s, q, kStream, 2, 2, 1), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("NULL buffer");
  EXPECT_EQ(drl_sde_logprob(&cpu, nullptr, out, x, v, t, dt, s, 2, 2, 1), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("drl_sde_logprob");
  EXPECT_EQ(drl_sde_logprob(&cpu, lp, out, x, v, t, dt, s, 2, -1, 1), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_sde_logprob_backward(&cpu, nullptr, lp, out, x, v, t, dt, s, 2, 2, 1), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("drl_sde_logprob_backward");
  EXPECT_EQ(drl_sde_step(&cpu, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, kStream, 0, 2,
                         1),
            DRL_OK);
  EXPECT_EQ(drl_sde_logprob_backward(&cpu, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0,
                                     2, 1),
            DRL_OK);
}

// ================================================================ SDE: the Gaussian-marginal acceptance test

namespace {

// The exact rectified-flow velocity of data N(m, s^2). With x_t = (1 - t) x0 + t eps (x0 ~ N(m, s^2), eps ~ N(0, 1)),
// x_t is Gaussian with mean (1 - t) m and variance V = (1 - t)^2 s^2 + t^2, Cov(eps, x_t) = t and
// Cov(x0, x_t) = (1 - t) s^2, so E[v | x_t = x] = E[eps - x0 | x] = c(t) (x - (1 - t) m) - m,
// c(t) = (t - (1 - t) s^2) / V.
double velocity_slope(double t, double s) { return (t - (1 - t) * s * s) / ((1 - t) * (1 - t) * s * s + t * t); }

struct Moments {
  double mean, var;
};

float marginal_sigma(float a, const std::vector<float> &grid, int k) {
  return a > 0 ? drl_sde_sigma(a, 1.0f, grid[k], grid[1]) : 0.0f;
}

// N rows of D dims from x ~ N(0, 1) at t = 1 through T steps of drl_sde_step on drl_time_grid(T, 1), with
// sigma_k = drl_sde_sigma(a, 1, t_k, t_1) (a = 0: the ODE), the velocity computed on the host in double, noise
// index = row and stream step = k (independent noise per step). The mean and variance over all N D final values.
// standardized_start: the starting sample shifted and scaled to mean 0 and variance 1 (the ODE's only randomness).
Moments run_marginal(double m, double s, float a, int T, int64_t N, int D, bool standardized_start = false) {
  const uint64_t seed = 0xF10Au;
  drl_device cpu = cpu_device();
  std::vector<float> grid(T + 1);
  drl_time_grid(grid.data(), T, 1.0f);
  std::vector<float> x((size_t)N * D), v((size_t)N * D), xn((size_t)N * D), t(N), dt(N), sig(N);
  std::vector<uint64_t> idx(N);
  std::iota(idx.begin(), idx.end(), 0ull);
  const uint32_t init_tag = drl_rng_tag(DRL_RNG_TEST, 1, 0), step_tag = drl_rng_tag(DRL_RNG_TEST, 2, 0);
  for (size_t i = 0; i < x.size(); ++i) x[i] = drl_rng_normal(seed, 0, init_tag, i);
  auto moments = [&] {
    double sum = 0, sq = 0;
    for (float e : x) sum += e;
    const double n = (double)x.size(), mean = sum / n;
    for (float e : x) sq += (e - mean) * (e - mean);
    return Moments{mean, sq / (n - 1)};
  };
  if (standardized_start) {
    const Moments m0 = moments();
    for (float &e : x) e = (float)((e - m0.mean) / std::sqrt(m0.var));
  }
  for (int k = 0; k < T; ++k) {
    std::fill(t.begin(), t.end(), grid[k]);
    std::fill(dt.begin(), dt.end(), grid[k + 1] - grid[k]);
    std::fill(sig.begin(), sig.end(), marginal_sigma(a, grid, k));
    const double tk = grid[k], c = velocity_slope(tk, s), off = (1 - tk) * m;
    for (size_t i = 0; i < x.size(); ++i) v[i] = (float)(c * ((double)x[i] - off) - m);
    drl_rng_stream st = {seed, (uint32_t)k, step_tag};
    EXPECT_EQ(drl_sde_step(&cpu, xn.data(), nullptr, x.data(), v.data(), t.data(), dt.data(), sig.data(), idx.data(),
                           st, N, D, 1),
              DRL_OK)
        << last_error();
    x.swap(xn);
  }
  return moments();
}

// The same chain in closed form: with a velocity linear in x every step is x' = A x + B + sd eps, so the mean and
// variance of infinitely many particles follow mean' = A mean + B, var' = A^2 var + sd^2 (in double, the C.1 formula).
// This is the discretised process's own target: the Monte Carlo run must match it to within sampling error.
Moments chain_moments(double m, double s, float a, int T) {
  std::vector<float> grid(T + 1);
  drl_time_grid(grid.data(), T, 1.0f);
  double mean = 0.0, var = 1.0;
  for (int k = 0; k < T; ++k) {
    double t = grid[k], dt = (double)grid[k + 1] - grid[k], sig = marginal_sigma(a, grid, k);
    double kk = sig * sig / (2 * t), cx = 1 + kk * dt, cv = (1 + kk * (1 - t)) * dt, c = velocity_slope(t, s);
    double A = cx + cv * c, B = cv * (-m - c * (1 - t) * m);
    mean = A * mean + B;
    var = A * A * var + sig * sig * -dt;
  }
  return {mean, var};
}

// Runs the chain by Monte Carlo and checks it against its closed form (5 standard errors) and its mean and variance
// against the data's N(m, s^2) (2%). Returns the Monte Carlo moments.
Moments expect_marginal(double m, double s, float a, int T, int64_t N, int D, const char *what) {
  Moments mo = run_marginal(m, s, a, T, N, D);
  Moments ch = chain_moments(m, s, a, T);
  std::printf("[ marginal ] %s: data N(%.3g, %.3g^2), a = %.2f, T = %d: mean %.5f (target %.5f, %+.2f%%), variance "
              "%.5f (target %.5f, %+.2f%%); the discrete chain's own moments %.5f, %.5f (%+.2f%%)\n",
              what, m, s, a, T, mo.mean, m, 100 * (mo.mean - m) / std::fabs(m), mo.var, s * s,
              100 * (mo.var - s * s) / (s * s), ch.mean, ch.var, 100 * (ch.var - s * s) / (s * s));
  ::testing::Test::RecordProperty(std::string(what) + "_mean", sci(mo.mean));
  ::testing::Test::RecordProperty(std::string(what) + "_var", sci(mo.var));
  const double n = (double)N * D, se_mean = std::sqrt(ch.var / n), se_var = ch.var * std::sqrt(2.0 / n);
  EXPECT_LE(std::fabs(mo.mean - ch.mean), 5 * se_mean) << what << ": mean " << mo.mean << " chain " << ch.mean;
  EXPECT_LE(std::fabs(mo.var - ch.var), 5 * se_var) << what << ": variance " << mo.var << " chain " << ch.var;
  EXPECT_LE(std::fabs(mo.mean - m), 0.02 * std::fabs(m)) << what << ": mean " << mo.mean << " target " << m;
  EXPECT_LE(std::fabs(mo.var - s * s), 0.02 * s * s) << what << ": variance " << mo.var << " target " << s * s;
  return mo;
}

}  // namespace

// The acceptance test at the research note's numbers (C.1: data N(2, 0.5^2), noise a = 0.7, T = 40; the
// note's prototype gave 2.002 and 0.2487): the SDE with the exact velocity reaches the data's mean and variance within
// 2%, and much nearer the variance than the Euler ODE at the same T (7.1% low). 50000 rows x 8 dims: standard errors
// 0.04% of the mean and 0.22% of the variance; the chain itself is 1.05% low (the discretisation at T = 40), which
// leaves 4 standard errors to the bound.
TEST(FlowSdeMarginal, NoiseLevel07ReachesTheDataMeanAndVarianceAtT40) {
  const double m = 2.0, s = 0.5;
  Moments sde = expect_marginal(m, s, 0.7f, 40, 50000, 8, "sde_a0.7_m2_s0.5");
  Moments ode = chain_moments(m, s, 0.0f, 40);
  EXPECT_LT(std::fabs(sde.var - s * s), std::fabs(ode.var - s * s)) << "the SDE should beat the Euler ODE at T = 40";
}

// More noise, the same marginals: the chain is 0.29% high here, so half the values (0.32% standard error) leave 5
// standard errors to the bound.
TEST(FlowSdeMarginal, NoiseLevel15ReachesTheDataMeanAndVarianceAtT40) {
  expect_marginal(1.5, 0.5, 1.5f, 40, 25000, 8, "sde_a1.5_m1.5_s0.5");
}

// The ODE (sigma = 0) as a sanity check. Its Euler discretisation is biased at T = 40: the chain's own variance is
// 7.1% below the target for N(2, 0.5^2) (research note C.1 measured 0.230), so at T = 40 the mean is held to 2% and
// the variance to the discrete chain and below 98% of the target (the coarse ODE under-disperses this sharp target); at
// T = 400 (chain: -0.74%) the variance is within 2% too. With a velocity linear in x every Euler step is an affine map,
// so from a standardized start (mean 0, variance 1: the ODE's only randomness removed) the particles' moments ARE the
// chain's closed form, up to float rounding: 4096 values (one thread, no barrier per step) suffice.
TEST(FlowSdeMarginal, EulerOdeMatchesItsDiscreteChainAndIsWithinTwoPercentAtT400) {
  const double m = 2.0, s = 0.5;
  for (int T : {40, 400}) {
    Moments mo = run_marginal(m, s, 0.0f, T, 512, 8, /*standardized_start=*/true);
    Moments ch = chain_moments(m, s, 0.0f, T);
    std::printf("[ marginal ] Euler ODE, data N(%.3g, %.3g^2), T = %d: mean %.6f (target %.5f, %+.2f%%), variance %.6f "
                "(target %.5f, %+.2f%%); the discrete chain's own moments %.6f, %.6f (relative differences %.2g, %.2g)\n",
                m, s, T, mo.mean, m, 100 * (mo.mean - m) / m, mo.var, s * s, 100 * (mo.var - s * s) / (s * s), ch.mean,
                ch.var, (mo.mean - ch.mean) / ch.mean, (mo.var - ch.var) / ch.var);
    ::testing::Test::RecordProperty("ode_T" + std::to_string(T) + "_var", sci(mo.var));
    EXPECT_NEAR(mo.mean, ch.mean, 1e-5 * m) << "T " << T;
    EXPECT_NEAR(mo.var, ch.var, 1e-5 * ch.var) << "T " << T;
    EXPECT_LE(std::fabs(mo.mean - m), 0.02 * m) << "T " << T;
    if (T == 40) {
      EXPECT_LT(mo.var, 0.98 * s * s) << "the coarse Euler ODE should under-disperse this sharp target";
    } else {
      EXPECT_LE(std::fabs(mo.var - s * s), 0.02 * s * s) << "T " << T;
    }
  }
}
