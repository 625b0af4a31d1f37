// The op table: every dispatching kernel op once, with its shapes, seeded inputs, a naive double-precision reference
// and its tolerances. The reference tolerance bounds the CPU op against exact arithmetic (from the float operations the
// op documents); the backend tolerance bounds another backend against the CPU: exact wherever both run the shared
// DRL_HD math of the op's header with every operation explicitly rounded, a stated bound where cuBLAS or libm take
// part. Large shapes (the sizes of a training step, sizes off every CUDA block and tile) are compared across backends
// only.
#include "op_table.h"

#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "../test_util.h"

extern "C" {
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/attention_decode.h"
#include "kernels/bias.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/kv_append.h"
#include "kernels/layout.h"
#include "kernels/lm_head.h"
#include "kernels/moe.h"
#include "kernels/rank_sum.h"
#include "kernels/reduce.h"
#include "kernels/rmsnorm.h"
#include "kernels/rng_fill.h"
#include "kernels/rope.h"
#include "kernels/sde.h"
#include "kernels/silu.h"
#include "kernels/spsa.h"
#include "kernels/swiglu.h"
#include "kernels/time_embed.h"
}

namespace {

#define PF(i) ((float *)p[i])
#define PI(i) ((int32_t *)p[i])

const double kPi = 3.14159265358979323846;

OpShape small(const std::string &label, std::function<OpCase()> make) { return {label, false, std::move(make)}; }
OpShape large(const std::string &label, std::function<OpCase()> make) { return {label, true, std::move(make)}; }

// The spacing of float just above |x| (half of it bounds one correctly rounded operation).
double fulp(double x) {
  float a = (float)std::fabs(x);
  return (double)std::nextafterf(a, INFINITY) - (double)a;
}

std::vector<double> zeros(size_t n) { return std::vector<double>(n, 0.0); }

// A copy of init as doubles.
std::vector<double> as_double(const OpCase &c, int i) {
  std::vector<double> v(c.t[i].count());
  for (size_t k = 0; k < v.size(); ++k) v[k] = c.f(i)[k];
  return v;
}

// ---- an independent Philox4x32-10 and Box-Muller in double, for the references of the random ops ----

// Philox4x32-10 (Salmon et al. 2011), written out again so the references share no code with the kernels.
uint32_t ref_word(uint64_t seed, uint32_t step, uint32_t tag, uint64_t i) {
  uint32_t c[4] = {(uint32_t)(i / 4), (uint32_t)((i / 4) >> 32), step, tag};
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
    c[0] = n0;
    c[1] = (uint32_t)p1;
    c[2] = n2;
    c[3] = (uint32_t)p0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c[i % 4];
}

// Element i of the stream as a standard normal: Box-Muller on words 2p, 2p + 1 (p = i / 2) in double, the first of
// the pair the sine, the second the cosine; *rad receives the radius.
double ref_normal(uint64_t seed, uint32_t step, uint32_t tag, uint64_t i, double *rad) {
  uint32_t x = ref_word(seed, step, tag, i & ~1ull), y = ref_word(seed, step, tag, i | 1ull);
  double u = (double)((x >> 8) + 1u) * 0x1p-24, v = (double)(y >> 8) * 0x1p-24;
  double r = std::sqrt(-2.0 * std::log(u));
  if (rad) *rad = r;
  return (i & 1) ? r * std::cos(2 * kPi * v) : r * std::sin(2 * kPi * v);
}

// What the engine's Box-Muller (philox.h) may lose against the double one at radius rad: its log is within 4e-7
// relative, its sin / cos within 3e-7 absolute (docs/architecture.md), plus the square root and the product.
double normal_err(double rad) { return 7e-7 * rad + 1e-7; }

double ref_rademacher(uint64_t seed, uint32_t step, uint32_t tag, uint64_t i) {
  return (ref_word(seed, step, tag, i) & 0x80000000u) ? 1.0 : -1.0;
}

// ================================================================ elementwise

OpCase add_case(int64_t n, bool alias) {
  OpCase c;
  Tol ref = ulps(0.5, "one correctly rounded float add");
  Tol dev = exact("drl_add_elem: one drl_fadd on both backends");
  int a, b, out;
  if (alias) {
    a = c.inout("a", mixed_values(n, 1), ref, dev);
    b = c.in("b", mixed_values(n, 2));
    out = a;
  } else {
    a = c.in("a", mixed_values(n, 1));
    b = c.in("b", mixed_values(n, 2));
    out = c.out("out", Ty::F32, n, ref, dev);
  }
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_add(d, PF(out), PF(a), PF(b), n); };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = zeros(n);
    for (int64_t i = 0; i < n; ++i) w[out][i] = (double)c.f(a)[i] + c.f(b)[i];
  };
  return c;
}

OpCase axpy_case(int64_t n) {
  OpCase c;
  const float alpha = -0.3711f;
  int x = c.in("x", mixed_values(n, 3));
  int y = c.inout("y", mixed_values(n, 4),
                  plus_ulps(magnitude(kU, "the product and the sum each rounded once: u |alpha x| + half an ulp"), 0.5),
                  exact("drl_axpy_elem: drl_fmul then drl_fadd on both backends"));
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_axpy(d, PF(y), alpha, PF(x), n); };
  c.ref = [=](OpCase &c, Want &w) {
    w[y] = zeros(n);
    c.t[y].mag = zeros(n);
    for (int64_t i = 0; i < n; ++i) {
      double ax = (double)alpha * c.f(x)[i];
      w[y][i] = c.f(y)[i] + ax;
      c.t[y].mag[i] = std::fabs(ax);
    }
  };
  return c;
}

OpCase scale_case(int64_t n) {
  OpCase c;
  const float s = 1.0f / 3.0f;
  int x = c.inout("x", mixed_values(n, 5), ulps(0.5, "one correctly rounded float multiply"),
                  exact("drl_scale_elem: one drl_fmul on both backends"));
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_scale(d, PF(x), s, n); };
  c.ref = [=](OpCase &c, Want &w) {
    w[x] = zeros(n);
    for (int64_t i = 0; i < n; ++i) w[x][i] = (double)c.f(x)[i] * s;
  };
  return c;
}

// ================================================================ SwiGLU (libm expf: a few ulp between backends)

double sigmoid(double g) { return 1.0 / (1.0 + std::exp(-g)); }

// Gates in [-8, 8], plus +-200 where e^-g overflows (sigmoid 0 or 1, never NaN).
std::vector<float> swiglu_gates(int64_t n, uint32_t seed) {
  auto g = random_uniform(n, seed, -8.0f, 8.0f);
  if (n > 1) {
    g[0] = -200.0f;
    g[1] = 200.0f;
  }
  return g;
}

OpCase swiglu_forward_case(int64_t n) {
  OpCase c;
  int g = c.in("gate", swiglu_gates(n, 3)), u = c.in("up", random_uniform(n, 4));
  int out = c.out("out", Ty::F32, n,
                  near(1e-37, 6 * kU, "expf (an ulp), 1 + e, the reciprocal and two products: 6 roundings of u"),
                  near(1e-6, 1e-5, "CUDA's expf is within 2 ulp, glibc's within 1: a few ulp after the products"));
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_swiglu_forward(d, PF(out), PF(g), PF(u), n); };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = zeros(n);
    for (int64_t i = 0; i < n; ++i) {
      double x = c.f(g)[i];
      w[out][i] = x * sigmoid(x) * c.f(u)[i];
    }
  };
  return c;
}

OpCase swiglu_backward_case(int64_t n) {
  OpCase c;
  int g = c.in("gate", swiglu_gates(n, 5)), u = c.in("up", random_uniform(n, 6)),
      dout = c.in("dout", random_uniform(n, 7));
  Tol dgate_ref = magnitude(12 * kU,
                            "s (3 u) enters s (1 + g (1 - s)) once per term: 12 u of |dout up| s (1 + |g|), "
                            "which covers the cancellation near g = -1.28");
  dgate_ref.abs = 1e-37;
  int dg =
      c.out("dgate", Ty::F32, n, dgate_ref,
            near(2e-6, 1e-5, "CUDA's expf vs glibc's; dgate cancels to 0 near g = -1.28: a floor of a few ulp of 1"));
  int du = c.out("dup", Ty::F32, n, near(1e-37, 5 * kU, "expf, 1 + e, the reciprocal and two products"),
                 near(1e-6, 1e-5, "CUDA's expf vs glibc's: a few ulp"));
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_swiglu_backward(d, PF(dg), PF(du), PF(dout), PF(g), PF(u), n);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[dg] = zeros(n);
    w[du] = zeros(n);
    c.t[dg].mag = zeros(n);
    for (int64_t i = 0; i < n; ++i) {
      double x = c.f(g)[i], up = c.f(u)[i], go = c.f(dout)[i], s = sigmoid(x);
      w[du][i] = go * x * s;
      w[dg][i] = go * up * s * (1 + x * (1 - s));
      c.t[dg].mag[i] = std::fabs(go * up) * s * (1 + std::fabs(x));
    }
  };
  return c;
}

// ================================================================ SiLU (engine-owned sigmoid: bit-identical)

// Pre-activations with the tails a kernel must treat alike on both backends: the clamp of e^x (|x| around 87.3 and
// 88.7 and beyond), +-0, subnormals, the extremes, SiLU's minimum at -1.278.
std::vector<float> activations(int64_t n, uint32_t seed) {
  auto v = random_normal(n, 4.0f, seed);
  const float special[] = {0.0f,    -0.0f,    100.0f, -100.0f, 87.3f,  -87.3f,  88.7f,   -88.7f,
                           -87.0f,  -90.0f,   17.0f,  90.0f,   1e30f,  -1e30f,  FLT_MAX, -FLT_MAX,
                           FLT_MIN, -FLT_MIN, 1e-30f, -1e-30f, 1e-40f, -1e-40f, -1.278f, -1.2784645f};
  for (size_t i = 0; i < sizeof special / sizeof *special && (int64_t)i < n; ++i) v[i * 7919 % n] = special[i];
  return v;
}

// Below x = -87.3 the clamp inside drl_expf holds the sigmoid near 3e-39 (silu.h): an absolute error of about
// 3.1e-39 |x| against the exact SiLU, which the tolerance allows for every x < 0.
const double kSigmoidFloor = 3.1e-39;

OpCase silu_forward_case(int64_t n, bool alias, std::vector<float> x0) {
  OpCase c;
  Tol ref = plus_ulps(magnitude(1,
                                "drl_sigmoid_exact within 3 ulp, the product half an ulp (silu.h: 4 ulp); below "
                                "x = -87.3 the clamped sigmoid adds 3.1e-39 |x|"),
                      4);
  Tol dev = exact("drl_silu_elem on drl_sigmoid_exact, every op rounded once (silu.h)");
  int x, out;
  if (alias) {
    x = c.inout("x", x0, ref, dev);
    out = x;
  } else {
    x = c.in("x", x0);
    out = c.out("out", Ty::F32, n, ref, dev);
  }
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_silu_forward(d, PF(out), PF(x), n); };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = zeros(n);
    c.t[out].mag = zeros(n);
    for (int64_t i = 0; i < n; ++i) {
      double v = c.f(x)[i];
      w[out][i] = v * sigmoid(v);
      if (v < 0) c.t[out].mag[i] = kSigmoidFloor * std::fabs(v);
    }
  };
  return c;
}

OpCase silu_backward_case(int64_t n, bool alias, std::vector<float> x0) {
  OpCase c;
  Tol ref = plus_ulps(magnitude(1,
                                "s within 3 ulp enters s + x s (1 - s) twice: 8 u of |dout| (s + |x| s (1 - s)), "
                                "which covers the cancellation near x = -1.28; plus the clamped sigmoid below -87.3"),
                      4);
  Tol dev = exact("drl_silu_backward_elem on drl_sigmoid_exact, every op rounded once (silu.h)");
  int x = c.in("x", x0), dout, dx;
  if (alias) {
    dout = c.inout("dout", random_normal(n, 1.0f, 11), ref, dev);
    dx = dout;
  } else {
    dout = c.in("dout", random_normal(n, 1.0f, 11));
    dx = c.out("dx", Ty::F32, n, ref, dev);
  }
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_silu_backward(d, PF(dx), PF(dout), PF(x), n); };
  c.ref = [=](OpCase &c, Want &w) {
    w[dx] = zeros(n);
    c.t[dx].mag = zeros(n);
    for (int64_t i = 0; i < n; ++i) {
      double v = c.f(x)[i], g = c.f(dout)[i], s = sigmoid(v);
      w[dx][i] = g * (s + v * s * (1 - s));
      double m = 8 * kU * std::fabs(g) * (s + std::fabs(v) * s * (1 - s));
      if (v < 0) m += 2 * kSigmoidFloor * std::fabs(g) * (1 + std::fabs(v));
      c.t[dx].mag[i] = m;
    }
  };
  return c;
}

// ================================================================ bias (double column sums: bit-identical)

OpCase bias_add_case(int64_t rows, int cols, uint32_t seed) {
  OpCase c;
  int y = c.inout("y", random_uniform(rows * cols, seed, -4.0f, 4.0f), ulps(0.5, "one correctly rounded float add"),
                  exact("drl_fadd of each element on both backends"));
  int b = c.in("b", random_uniform(cols, seed + 1, -2.0f, 2.0f));
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_bias_add(d, PF(y), PF(b), rows, cols); };
  c.ref = [=](OpCase &c, Want &w) {
    w[y] = zeros(rows * cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int k = 0; k < cols; ++k) w[y][r * cols + k] = (double)c.f(y)[r * cols + k] + c.f(b)[k];
  };
  return c;
}

OpCase bias_backward_case(int64_t rows, int cols, uint32_t seed) {
  OpCase c;
  int dy = c.in("dy", mixed_values(rows * cols, seed));
  int db = c.inout("db", random_uniform(cols, seed + 1, -3.0f, 3.0f),
                   plus_ulps(magnitude(kU, "the double column sum rounded to float once, then one float add"), 0.5),
                   exact("each column summed in double over rows ascending on both backends (bias.h)"));
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_bias_backward(d, PF(db), PF(dy), rows, cols); };
  c.ref = [=](OpCase &c, Want &w) {
    w[db] = zeros(cols);
    c.t[db].mag = zeros(cols);
    for (int k = 0; k < cols; ++k) {
      double s = 0, a = 0;
      for (int64_t r = 0; r < rows; ++r) {
        s += c.f(dy)[r * cols + k];
        a += std::fabs(c.f(dy)[r * cols + k]);
      }
      w[db][k] = c.f(db)[k] + s;
      c.t[db].mag[k] = std::fabs(s) + rows * 0x1p-29 * a;  // the double sum's own rounding, far below u
    }
  };
  return c;
}

// ================================================================ RMSNorm (fixed lane and chunk order: bit-identical)

OpCase rmsnorm_forward_case(int N, int C, uint32_t seed) {
  OpCase c;
  const float eps = 1e-5f;
  // The lane sums of C / 32 squares and the 5-level tree, then /C, +eps, sqrt and the reciprocal: each rounding at
  // most u, halved by the square root.
  const double k_rstd = ((C + 31) / 32 + 5 + 2 + 2) / 2.0 + 2;
  int x = c.in("inp", random_uniform((size_t)N * C, seed, -3.0f, 3.0f));
  int wt = c.in("weight", random_uniform(C, seed + 1, 0.5f, 1.5f));
  Tol dev = exact("the 32-lane row order and every op of rmsnorm.h rounded once on both backends");
  int out = c.out("out", Ty::F32, (size_t)N * C,
                  near(0, (k_rstd + 2) * kU, "rstd's bound plus the two products x rstd w"), dev);
  int rstd =
      c.out("rstd", Ty::F32, N,
            near(0, k_rstd * kU, "C/32 lane adds, 5 tree adds, /C, +eps: halved by sqrt, plus the reciprocal"), dev);
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_rmsnorm_forward(d, PF(out), PF(rstd), PF(x), PF(wt), N, C, eps);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = zeros((size_t)N * C);
    w[rstd] = zeros(N);
    for (int n = 0; n < N; ++n) {
      const float *xr = c.f(x) + (size_t)n * C;
      double ss = 0;
      for (int k = 0; k < C; ++k) ss += (double)xr[k] * xr[k];
      double r = 1.0 / std::sqrt(ss / C + (double)eps);
      w[rstd][n] = r;
      for (int k = 0; k < C; ++k) w[out][(size_t)n * C + k] = xr[k] * r * c.f(wt)[k];
    }
  };
  return c;
}

OpCase rmsnorm_backward_case(int N, int C, uint32_t seed) {
  OpCase c;
  auto xv = random_uniform((size_t)N * C, seed, -3.0f, 3.0f);
  std::vector<float> rs(N);
  for (int n = 0; n < N; ++n) {
    double ss = 0;
    for (int k = 0; k < C; ++k) ss += (double)xv[(size_t)n * C + k] * xv[(size_t)n * C + k];
    rs[n] = (float)(1.0 / std::sqrt(ss / C + 1e-5));
  }
  int x = c.in("inp", xv), wt = c.in("weight", random_uniform(C, seed + 1, 0.5f, 1.5f));
  int dout = c.in("dout", random_uniform((size_t)N * C, seed + 2)), rstd = c.in("rstd", rs);
  Tol dev = exact("the 32-lane row dot and the fixed 32-row dweight chunks of rmsnorm.h on both backends");
  const int k_dinp = (C + 31) / 32 + 12;
  const int k_dw = std::min(N, DRL_RMSNORM_CHUNK_ROWS) + (N + DRL_RMSNORM_CHUNK_ROWS - 1) / DRL_RMSNORM_CHUNK_ROWS + 4;
  int dinp = c.inout("dinp", random_uniform((size_t)N * C, seed + 3),
                     magnitude(k_dinp * kU,
                               "the row dot (C/32 lane adds, 5 tree adds) and 7 roundings, of the "
                               "magnitudes of its terms"),
                     dev);
  int dw =
      c.inout("dweight", random_uniform(C, seed + 4),
              magnitude(k_dw * kU, "32 rows per chunk, the chunks in order, one add: of the terms' magnitudes"), dev);
  int scr = c.scratch("scratch", [=](const drl_device *d) { return 4 * drl_rmsnorm_scratch_floats(d, N, C); });
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_rmsnorm_backward(d, PF(dinp), PF(dw), PF(dout), PF(x), PF(wt), PF(rstd), N, C, PF(scr));
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[dinp] = as_double(c, dinp);
    w[dw] = as_double(c, dw);
    c.t[dinp].mag.assign((size_t)N * C, 0);
    c.t[dw].mag.assign(C, 0);
    for (int k = 0; k < C; ++k) c.t[dw].mag[k] = std::fabs(w[dw][k]);
    for (int n = 0; n < N; ++n) {
      const float *xr = c.f(x) + (size_t)n * C, *g = c.f(dout) + (size_t)n * C;
      double r = c.f(rstd)[n], dot = 0, dot_abs = 0;
      for (int k = 0; k < C; ++k) {
        dot += (double)c.f(wt)[k] * g[k] * xr[k];
        dot_abs += std::fabs((double)c.f(wt)[k] * g[k] * xr[k]);
      }
      double coef = r * r * dot / C, coef_abs = r * r * dot_abs / C;
      for (int k = 0; k < C; ++k) {
        size_t i = (size_t)n * C + k;
        double wg = (double)c.f(wt)[k] * g[k];
        w[dinp][i] += r * (wg - xr[k] * coef);
        c.t[dinp].mag[i] = std::fabs(c.f(dinp)[i]) + r * (std::fabs(wg) + std::fabs(xr[k]) * coef_abs);
        w[dw][k] += (double)g[k] * xr[k] * r;
        c.t[dw].mag[k] += std::fabs((double)g[k] * xr[k] * r);
      }
    }
  };
  return c;
}

// ================================================================ embedding (copies; sums in a fixed order)

// N tokens in [0, V) with one long run of token 7 at the start (where V > 7).
std::vector<int32_t> tokens(int N, int V, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> tok(N);
  for (auto &t : tok) t = (int32_t)(g() % (uint32_t)V);
  for (int n = 0; n < N / 10 && V > 7; ++n) tok[n] = 7;
  return tok;
}

OpCase embedding_forward_case(int N, int C, int V) {
  OpCase c;
  int tok = c.in("tokens", tokens(N, V, 11 + V)), table = c.in("table", random_uniform((size_t)V * C, 12));
  int out = c.out("out", Ty::F32, (size_t)N * C, exact("a copy of the token's row"), exact("a copy on both backends"));
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_embedding_forward(d, PF(out), PI(tok), PF(table), N, C, V); };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = zeros((size_t)N * C);
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < C; ++k) w[out][(size_t)n * C + k] = c.f(table)[(size_t)c.i32(tok)[n] * C + k];
  };
  return c;
}

// N tokens in [0, V), nine in ten of them pad (a padding token whose run spans many chunks).
std::vector<int32_t> padded_tokens(int N, int V, int32_t pad, uint32_t seed) {
  std::vector<int32_t> tok = tokens(N, V, seed);
  std::mt19937 g(seed + 1);
  for (auto &t : tok)
    if (g() % 10 != 0) t = pad;
  return tok;
}

// pad >= 0: mostly that token (padded_tokens); otherwise tokens().
OpCase embedding_backward_case(int N, int C, int V, int32_t pad = -1) {
  OpCase c;
  int tok = c.in("tokens", pad >= 0 ? padded_tokens(N, V, pad, 21 + V) : tokens(N, V, 21 + V));
  int dout = c.in("dout", random_uniform((size_t)N * C, 13, -10.0f, 10.0f));
  int dt = c.inout("dtable", random_uniform((size_t)V * C, 14),
                   magnitude(kU, "a float sum of a token's n rows onto its entry: (n + 1) u of the terms' magnitudes"),
                   exact("each (token, channel) summed in the fixed chunk order of embedding.h, no atomics"));
  int scr = c.scratch("scratch", [=](const drl_device *d) { return drl_embedding_scratch_bytes(d, N, C); });
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_embedding_backward(d, PF(dt), PF(dout), PI(tok), N, C, V, p[scr]);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[dt] = as_double(c, dt);
    std::vector<double> abs_sum((size_t)V * C), count(V);
    for (size_t i = 0; i < abs_sum.size(); ++i) abs_sum[i] = std::fabs(w[dt][i]);
    for (int n = 0; n < N; ++n) {
      int32_t t = c.i32(tok)[n];
      count[t] += 1;
      for (int k = 0; k < C; ++k) {
        double g = c.f(dout)[(size_t)n * C + k];
        w[dt][(size_t)t * C + k] += g;
        abs_sum[(size_t)t * C + k] += std::fabs(g);
      }
    }
    c.t[dt].mag.assign((size_t)V * C, 0);
    for (size_t i = 0; i < abs_sum.size(); ++i) c.t[dt].mag[i] = (count[i / C] + 1) * abs_sum[i];
  };
  return c;
}

// ================================================================ RoPE (shared tables, explicit roundings)

OpCase rope_case(int N, int heads, int D, int max_pos, bool inverse) {
  OpCase c;
  std::vector<float> ct((size_t)max_pos * D / 2), st(ct.size());
  drl_rope_tables(ct.data(), st.data(), max_pos, D, 10000.0);
  std::mt19937 g(5);
  std::vector<int32_t> pos(N);
  for (auto &q : pos) q = (int32_t)(g() % (uint32_t)max_pos);
  int ip = c.in("pos", pos), ic = c.in("cos", ct), is = c.in("sin", st);
  int x = c.inout("x", random_uniform((size_t)N * heads * D, 6, -3.0f, 3.0f),
                  plus_ulps(magnitude(kU, "two products and a sum, each rounded once"), 0.5),
                  exact("drl_rope_rotate, explicitly rounded, on the same tables on both backends"));
  c.run = [=](const drl_device *d, OpPtrs p) {
    return inverse ? drl_rope_backward(d, PF(x), PI(ip), PF(ic), PF(is), N, heads, D)
                   : drl_rope_forward(d, PF(x), PI(ip), PF(ic), PF(is), N, heads, D);
  };
  c.ref = [=](OpCase &c, Want &w) {
    const int half = D / 2;
    w[x] = as_double(c, x);
    c.t[x].mag.assign(w[x].size(), 0);
    for (int n = 0; n < N; ++n)
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < half; ++i) {
          size_t a = ((size_t)n * heads + h) * D + i, b = a + half;
          double co = c.f(ic)[(size_t)c.i32(ip)[n] * half + i], si = c.f(is)[(size_t)c.i32(ip)[n] * half + i];
          if (inverse) si = -si;
          double x1 = c.f(x)[a], x2 = c.f(x)[b];
          w[x][a] = x1 * co - x2 * si;
          w[x][b] = x2 * co + x1 * si;
          c.t[x].mag[a] = std::fabs(x1 * co) + std::fabs(x2 * si);
          c.t[x].mag[b] = std::fabs(x2 * co) + std::fabs(x1 * si);
        }
  };
  return c;
}

// ================================================================ attention (cuBLAS on the GPU: a stated bound)

struct AttnShape {
  int B, T, H, KV, D;
  std::vector<int32_t> rs;  // row_start per batch row; empty: no padding (NULL)
  size_t nq() const { return (size_t)B * T * H * D; }
  size_t nkv() const { return (size_t)B * T * KV * D; }
  size_t natt() const { return (size_t)B * H * T * T; }
  int start(int b) const { return rs.empty() ? 0 : rs[b]; }
};

std::string attn_label(const AttnShape &s) {
  std::string l = "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " H=" + std::to_string(s.H) +
                  " KV=" + std::to_string(s.KV) + " D=" + std::to_string(s.D);
  if (!s.rs.empty()) {
    l += " row_start";
    for (int32_t r : s.rs) l += " " + std::to_string(r);
  }
  return l;
}

// Softmax probabilities [B, H, T, T] of the causal, left-padded attention in double.
std::vector<double> attn_probs(const AttnShape &s, const float *q, const float *k) {
  std::vector<double> P(s.natt(), 0.0);
  const int g = s.H / s.KV;
  const double scale = 1.0 / std::sqrt((double)s.D);
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h)
      for (int t = 0; t < s.T; ++t) {
        int lo = s.start(b), hi = t >= lo ? t + 1 : lo;
        double *row = P.data() + (((size_t)b * s.H + h) * s.T + t) * s.T, mx = -INFINITY, sum = 0;
        const float *qt = q + (((size_t)b * s.T + t) * s.H + h) * s.D;
        for (int j = lo; j < hi; ++j) {
          const float *kj = k + (((size_t)b * s.T + j) * s.KV + h / g) * s.D;
          double dot = 0;
          for (int d = 0; d < s.D; ++d) dot += (double)qt[d] * kj[d];
          row[j] = dot * scale;
          mx = std::max(mx, row[j]);
        }
        for (int j = lo; j < hi; ++j) sum += (row[j] = std::exp(row[j] - mx));
        for (int j = lo; j < hi; ++j) row[j] /= sum;
      }
  return P;
}

const char *kAttnDevWhy =
    "cuBLAS and the CPU loops order their sums differently and CUDA's expf is not glibc's "
    "(TF32 off): within 1e-4 of the largest magnitude; masked and padded entries exact zeros";

OpCase attention_forward_case(const AttnShape &s, uint32_t seed) {
  OpCase c;
  int q = c.in("q", random_uniform(s.nq(), seed, -2, 2)), k = c.in("k", random_uniform(s.nkv(), seed + 1, -2, 2));
  int v = c.in("v", random_uniform(s.nkv(), seed + 2));
  int rs = s.rs.empty() ? -1 : c.in("row_start", s.rs);
  int out = c.out("out", Ty::F32, s.nq(),
                  with_zeros(rel_to_max(2e-6,
                                        "float scores (D/8 + 3 roundings), expf, a float sum over the keys and "
                                        "the output sum: within 2e-6 of the largest output")),
                  with_zeros(rel_to_max(1e-4, kAttnDevWhy)));
  int att = c.out("att", Ty::F32, s.natt(),
                  with_zeros(near(1e-6, 0,
                                  "float scores (D/8 + 3 roundings of terms up to 4), expf and the row sum: "
                                  "within 1e-6 of a probability")),
                  with_zeros(near(1e-5, 0, kAttnDevWhy)));
  int scr = c.scratch(
      "scratch", [=](const drl_device *d) { return 4 * drl_attention_scratch_floats(d, s.B, s.T, s.H, s.KV, s.D); });
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_attention_forward(d, PF(out), PF(att), PF(q), PF(k), PF(v), rs < 0 ? nullptr : PI(rs), s.B, s.T, s.H,
                                 s.KV, s.D, PF(scr));
  };
  c.ref = [=](OpCase &c, Want &w) {
    std::vector<double> P = attn_probs(s, c.f(q), c.f(k));
    w[att] = P;
    w[out] = zeros(s.nq());
    const int g = s.H / s.KV;
    for (int b = 0; b < s.B; ++b)
      for (int h = 0; h < s.H; ++h)
        for (int t = 0; t < s.T; ++t)
          for (int j = 0; j < s.T; ++j) {
            double pj = P[(((size_t)b * s.H + h) * s.T + t) * s.T + j];
            if (pj == 0) continue;
            const float *vj = c.f(v) + (((size_t)b * s.T + j) * s.KV + h / g) * s.D;
            double *o = w[out].data() + (((size_t)b * s.T + t) * s.H + h) * s.D;
            for (int d = 0; d < s.D; ++d) o[d] += pj * vj[d];
          }
  };
  return c;
}

OpCase attention_backward_case(const AttnShape &s, uint32_t seed) {
  OpCase c;
  auto qv = random_uniform(s.nq(), seed, -2, 2), kv = random_uniform(s.nkv(), seed + 1, -2, 2);
  std::vector<double> P = attn_probs(s, qv.data(), kv.data());
  std::vector<float> attv(P.begin(), P.end());  // the forward's probabilities, rounded once
  int q = c.in("q", qv), k = c.in("k", kv), v = c.in("v", random_uniform(s.nkv(), seed + 2));
  int dout = c.in("dout", random_uniform(s.nq(), seed + 3)), att = c.in("att", attv);
  int rs = s.rs.empty() ? -1 : c.in("row_start", s.rs);
  Tol ref = with_zeros(rel_to_max(2e-6,
                                  "float dot products over D and over the keys, and the softmax backward's row "
                                  "dot: within 2e-6 of the largest gradient"));
  Tol dev = with_zeros(rel_to_max(1e-4, kAttnDevWhy));
  int dq = c.out("dq", Ty::F32, s.nq(), ref, dev), dk = c.out("dk", Ty::F32, s.nkv(), ref, dev);
  int dv = c.out("dv", Ty::F32, s.nkv(), ref, dev);
  int scr = c.scratch(
      "scratch", [=](const drl_device *d) { return 4 * drl_attention_scratch_floats(d, s.B, s.T, s.H, s.KV, s.D); });
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_attention_backward(d, PF(dq), PF(dk), PF(dv), PF(dout), PF(q), PF(k), PF(v), PF(att),
                                  rs < 0 ? nullptr : PI(rs), s.B, s.T, s.H, s.KV, s.D, PF(scr));
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[dq] = zeros(s.nq());
    w[dk] = zeros(s.nkv());
    w[dv] = zeros(s.nkv());
    const int g = s.H / s.KV;
    const double scale = 1.0 / std::sqrt((double)s.D);
    std::vector<double> dp(s.T);
    for (int b = 0; b < s.B; ++b)
      for (int h = 0; h < s.H; ++h)
        for (int t = 0; t < s.T; ++t) {
          const size_t qrow = (((size_t)b * s.T + t) * s.H + h) * s.D;
          const float *p = c.f(att) + (((size_t)b * s.H + h) * s.T + t) * s.T, *go = c.f(dout) + qrow;
          int lo = s.start(b), hi = t >= lo ? t + 1 : lo;
          double dot = 0;
          for (int j = lo; j < hi; ++j) {
            const size_t kvrow = (((size_t)b * s.T + j) * s.KV + h / g) * s.D;
            dp[j] = 0;
            for (int d = 0; d < s.D; ++d) {
              dp[j] += (double)go[d] * c.f(v)[kvrow + d];
              w[dv][kvrow + d] += (double)p[j] * go[d];
            }
            dot += p[j] * dp[j];
          }
          for (int j = lo; j < hi; ++j) {
            const size_t kvrow = (((size_t)b * s.T + j) * s.KV + h / g) * s.D;
            double ds = p[j] * (dp[j] - dot) * scale;
            for (int d = 0; d < s.D; ++d) {
              w[dq][qrow + d] += ds * c.f(k)[kvrow + d];
              w[dk][kvrow + d] += ds * c.f(q)[qrow + d];
            }
          }
        }
  };
  return c;
}

// ================================================================ KV cache: append (copies) and decode attention

OpCase kv_append_case(int n_slots, int T_cap, int kvd, int src_rows, int N, bool with_src_row) {
  OpCase c;
  std::vector<int32_t> src(N), slot(N), pos(N);
  for (int i = 0; i < N; ++i) {  // distinct destinations
    src[i] = with_src_row ? (i * 7) % src_rows : i;
    slot[i] = i % n_slots;
    pos[i] = (i / n_slots) * 3 + 1;
  }
  int ks = c.in("k_src", random_uniform((size_t)src_rows * kvd, 1)),
      vs = c.in("v_src", random_uniform((size_t)src_rows * kvd, 2));
  int isrc = with_src_row ? c.in("src_row", src) : -1, islot = c.in("slot", slot), ipos = c.in("pos", pos);
  Tol ref = exact("a copy of the source row"), dev = exact("a copy on both backends");
  int kc = c.inout("k_cache", random_uniform((size_t)n_slots * T_cap * kvd, 3), ref, dev);
  int vc = c.inout("v_cache", random_uniform((size_t)n_slots * T_cap * kvd, 4), ref, dev);
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_kv_append(d, PF(kc), PF(vc), PF(ks), PF(vs), isrc < 0 ? nullptr : PI(isrc), PI(islot), PI(ipos), N,
                         src_rows, n_slots, T_cap, kvd);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[kc] = as_double(c, kc);
    w[vc] = as_double(c, vc);
    for (int i = 0; i < N; ++i) {
      size_t dst = ((size_t)c.i32(islot)[i] * T_cap + c.i32(ipos)[i]) * kvd;
      size_t s = (size_t)(isrc < 0 ? i : c.i32(isrc)[i]) * kvd;
      for (int e = 0; e < kvd; ++e) {
        w[kc][dst + e] = c.f(ks)[s + e];
        w[vc][dst + e] = c.f(vs)[s + e];
      }
    }
  };
  return c;
}

struct DecodeShape {
  int n_groups, P, P_cap, n_slots, S_cap, H, KV, D;
  std::vector<int32_t> grp, slot, pos, rs;  // rs: per group
};

DecodeShape decode_edges(int D) {
  // Group 1's rows are not adjacent; group 2's prompt starts after P (no prefix column) and row 2's query (column 37)
  // is padding (an empty key range); row 3 sees only itself; row 1 is still on a prompt column.
  return {4, 30, 32, 9, 70, 8, 2, D, {1, 0, 2, 3, 1, 2, 0}, {8, 0, 3, 5, 1, 2, 7}, {99, 12, 37, 64, 45, 70, 31},
          {0, 3, 38, 64}};
}

// Groups of 16 adjacent rows sharing a prompt of T_cap / 4 columns (random row starts), each row at a random column
// after it.
DecodeShape decode_batch(int n_slots, int T_cap, int H, int KV, int D) {
  const int P = T_cap / 4;
  DecodeShape s{n_slots / 16, P, P, n_slots, T_cap - P, H, KV, D, {}, {}, {}, {}};
  std::mt19937 g(7);
  for (int i = 0; i < s.n_groups; ++i) s.rs.push_back((int32_t)(g() % (uint32_t)P));
  for (int i = 0; i < n_slots; ++i) {
    s.grp.push_back(i / 16);
    s.slot.push_back(n_slots - 1 - i);
    s.pos.push_back(P + (int32_t)(g() % (uint32_t)(T_cap - P)));
  }
  return s;
}

OpCase attention_decode_case(const DecodeShape &s, uint32_t seed) {
  OpCase c;
  const int N = (int)s.slot.size(), kvd = s.KV * s.D, T_cap = s.P + s.S_cap;
  const size_t nprefix = (size_t)s.n_groups * s.P_cap * kvd, nsuffix = (size_t)s.n_slots * s.S_cap * kvd;
  int kp = c.in("k_prefix", random_uniform(nprefix, seed, -2, 2)), vp = c.in("v_prefix", random_uniform(nprefix, seed + 1));
  int ks = c.in("k_suffix", random_uniform(nsuffix, seed + 3, -2, 2));
  int vs = c.in("v_suffix", random_uniform(nsuffix, seed + 4));
  int q = c.in("q", random_uniform((size_t)N * s.H * s.D, seed + 2, -2, 2));
  int igrp = c.in("group", s.grp), islot = c.in("slot", s.slot), irs = c.in("row_start", s.rs);
  int ipos = c.in("pos", s.pos);
  int out = c.out("out", Ty::F32, (size_t)N * s.H * s.D,
                  with_zeros(near(1e-6, 0,
                                  "float scores (D/8 + 3 roundings), expf, the softmax sum and the output "
                                  "sum over the keys in order: within 1e-6 of values up to 1")),
                  with_zeros(near(1e-5, 0,
                                  "the same per-key arithmetic; only the softmax sum's order and CUDA's "
                                  "expf differ; an empty key range gives exact zeros")));
  int scr = c.scratch("scratch",
                      [=](const drl_device *) { return 4 * drl_attention_decode_scratch_floats(N, s.H, T_cap); });
  c.run = [=](const drl_device *d, OpPtrs p) {
    drl_decode_kv kv = {PF(kp), PF(vp), PF(ks), PF(vs), PI(irs), s.n_groups, s.P_cap, s.n_slots, s.S_cap, s.P};
    return drl_attention_decode(d, PF(out), PF(q), &kv, PI(igrp), PI(islot), PI(ipos), N, s.H, s.KV, s.D, PF(scr));
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = zeros((size_t)N * s.H * s.D);
    const int g = s.H / s.KV;
    const double scale = 1.0 / std::sqrt((double)s.D);
    std::vector<double> sc(T_cap);
    for (int i = 0; i < N; ++i)
      for (int h = 0; h < s.H; ++h) {
        int gr = c.i32(igrp)[i], sl = c.i32(islot)[i], lo = c.i32(irs)[gr], t = c.i32(ipos)[i];
        int hi = t >= lo ? t + 1 : lo;
        auto at = [&](int x_prefix, int x_suffix, int j) {  // column j of kv head h / g
          return j < s.P ? c.f(x_prefix) + (((size_t)gr * s.P_cap + j) * s.KV + h / g) * s.D
                         : c.f(x_suffix) + (((size_t)sl * s.S_cap + j - s.P) * s.KV + h / g) * s.D;
        };
        const float *qi = c.f(q) + ((size_t)i * s.H + h) * s.D;
        double mx = -INFINITY, sum = 0;
        for (int j = lo; j < hi; ++j) {
          const float *kj = at(kp, ks, j);
          double dot = 0;
          for (int d = 0; d < s.D; ++d) dot += (double)qi[d] * kj[d];
          sc[j] = dot * scale;
          mx = std::max(mx, sc[j]);
        }
        for (int j = lo; j < hi; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
        double *o = w[out].data() + ((size_t)i * s.H + h) * s.D;
        for (int j = lo; j < hi; ++j) {
          const float *vj = at(vp, vs, j);
          for (int d = 0; d < s.D; ++d) o[d] += sc[j] / sum * vj[d];
        }
      }
  };
  return c;
}

// ================================================================ LM head (cuBLAS logits on the GPU: a stated bound)

struct LmShape {
  int N, C, V;
  float temp;
  int cpu_chunk, dev_chunk;  // rows per chunk: different on the two backends, so chunking must not matter
};

std::string lm_label(const LmShape &s) {
  return "N=" + std::to_string(s.N) + " C=" + std::to_string(s.C) + " V=" + std::to_string(s.V) +
         " T=" + std::to_string(s.temp).substr(0, 4);
}

int lm_chunk(const LmShape &s, const drl_device *d) {
  return d->backend == DRL_BACKEND_CUDA ? s.dev_chunk : s.cpu_chunk;
}

// Targets in [0, V), every 7th row -1 (no target).
std::vector<int32_t> lm_targets(int N, int V) {
  std::vector<int32_t> t(N);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> td(0, V - 1);
  for (int n = 0; n < N; ++n) t[n] = n % 7 == 2 ? -1 : td(rng);
  return t;
}

// Row n's logits in double.
std::vector<double> lm_logits(const float *x, const float *W, int n, int C, int V, float temp) {
  std::vector<double> z(V);
  for (int j = 0; j < V; ++j) {
    double a = 0;
    for (int k = 0; k < C; ++k) a += (double)x[(size_t)n * C + k] * W[(size_t)j * C + k];
    z[j] = a / temp;
  }
  return z;
}

double log_sum_exp(const std::vector<double> &z) {
  double mx = *std::max_element(z.begin(), z.end()), s = 0;
  for (double v : z) s += std::exp(v - mx);
  return mx + std::log(s);
}

const char *kLmDevWhy =
    "the logits come from cuBLAS vs OpenBLAS (TF32 off) and the row math uses CUDA's expf / logf "
    "vs glibc's";

OpCase lm_head_forward_case(const LmShape &s, bool with_logprob) {
  OpCase c;
  int x = c.in("x", random_normal((size_t)s.N * s.C, 1.0f, 1));
  int W = c.in("W", random_normal((size_t)s.V * s.C, 2.0f / std::sqrt((float)s.C), 2));
  int tg = with_logprob ? c.in("targets", lm_targets(s.N, s.V)) : -1;
  Tol ref = near(1e-6, 1e-6,
                 "float logits (C products), the online log-sum-exp's expf / logf and its lane tree: "
                 "1e-6 plus 1e-6 of the value");
  Tol dev = near(1e-5, 1e-5, kLmDevWhy);
  int lp = with_logprob ? c.out("logprob", Ty::F32, s.N, with_zeros(ref), with_zeros(dev)) : -1;
  int ent = c.out("entropy", Ty::F32, s.N, ref, dev);
  int scr =
      c.scratch("scratch", [=](const drl_device *d) { return 4 * drl_lm_head_scratch_floats(d, lm_chunk(s, d), s.V); });
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_lm_head_forward(d, lp < 0 ? nullptr : PF(lp), PF(ent), PF(x), PF(W), tg < 0 ? nullptr : PI(tg), s.N, s.C,
                               s.V, s.temp, PF(scr), lm_chunk(s, d));
  };
  c.ref = [=](OpCase &c, Want &w) {
    if (lp >= 0) w[lp] = zeros(s.N);
    w[ent] = zeros(s.N);
    for (int n = 0; n < s.N; ++n) {
      std::vector<double> z = lm_logits(c.f(x), c.f(W), n, s.C, s.V, s.temp);
      double lse = log_sum_exp(z), pz = 0;
      for (double v : z) pz += std::exp(v - lse) * v;
      w[ent][n] = lse - pz;
      if (lp >= 0) w[lp][n] = c.i32(tg)[n] < 0 ? 0.0 : z[c.i32(tg)[n]] - lse;
    }
  };
  return c;
}

OpCase lm_head_backward_case(const LmShape &s, bool with_dx, bool with_dw) {
  OpCase c;
  int x = c.in("x", random_normal((size_t)s.N * s.C, 1.0f, 1));
  int W = c.in("W", random_normal((size_t)s.V * s.C, 2.0f / std::sqrt((float)s.C), 2));
  int tg = c.in("targets", lm_targets(s.N, s.V)), dlp = c.in("dlogprob", random_normal(s.N, 1.0f, 4));
  Tol ref = rel_to_max(4e-6,
                       "float logits, expf of each softmax term and the two GEMMs over V and N: within 4e-6 of "
                       "the largest gradient");
  Tol dev = rel_to_max(1e-4, kLmDevWhy);
  int dx = with_dx ? c.out("dx", Ty::F32, (size_t)s.N * s.C, ref, dev) : -1;
  int dW = with_dw ? c.inout("dW", random_normal((size_t)s.V * s.C, 0.01f, 5), ref, dev) : -1;
  int scr =
      c.scratch("scratch", [=](const drl_device *d) { return 4 * drl_lm_head_scratch_floats(d, lm_chunk(s, d), s.V); });
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_lm_head_backward(d, dx < 0 ? nullptr : PF(dx), dW < 0 ? nullptr : PF(dW), PF(dlp), PF(x), PF(W), PI(tg),
                                s.N, s.C, s.V, s.temp, PF(scr), lm_chunk(s, d));
  };
  c.ref = [=](OpCase &c, Want &w) {
    if (dx >= 0) w[dx] = zeros((size_t)s.N * s.C);
    if (dW >= 0) w[dW] = as_double(c, dW);
    for (int n = 0; n < s.N; ++n) {
      int t = c.i32(tg)[n];
      if (t < 0) continue;
      std::vector<double> z = lm_logits(c.f(x), c.f(W), n, s.C, s.V, s.temp);
      double lse = log_sum_exp(z), g = c.f(dlp)[n] / s.temp;
      for (int j = 0; j < s.V; ++j) {
        double dz = g * ((j == t ? 1.0 : 0.0) - std::exp(z[j] - lse));
        for (int k = 0; k < s.C; ++k) {
          if (dx >= 0) w[dx][(size_t)n * s.C + k] += dz * c.f(W)[(size_t)j * s.C + k];
          if (dW >= 0) w[dW][(size_t)j * s.C + k] += dz * c.f(x)[(size_t)n * s.C + k];
        }
      }
    }
  };
  return c;
}

// ================================================================ AdamW (explicitly rounded: bit-identical)

// One element of the update in double, with a first-order bound on what adamw.h's float sequence loses: each
// rounding at most u of the value it rounds, carried through the later operations.
struct AdamRef {
  double p, m, v, err_p, err_m, err_v;
};

AdamRef adam_ref(double p, double g0, double m, double v, const drl_adamw_hparams &hp, double decay) {
  const double b1 = hp.beta1, b2 = hp.beta2, bias1 = 1 - std::pow(b1, hp.step), bias2 = 1 - std::pow(b2, hp.step);
  AdamRef r;
  double g = g0 * hp.grad_scale;
  r.m = b1 * m + (1 - b1) * g;
  r.v = b2 * v + (1 - b2) * g * g;
  r.err_m = 3 * kU * (std::fabs(b1 * m) + std::fabs((1 - b1) * g)) + kU * std::fabs(r.m);
  r.err_v = 5 * kU * (std::fabs(b2 * v) + (1 - b2) * g * g) + kU * r.v;
  double mh = r.m / bias1, vh = r.v / bias2, sq = std::sqrt(vh), den = sq + hp.eps, q = mh / den;
  double err_mh = r.err_m / bias1 + 2 * kU * std::fabs(mh), err_vh = r.err_v / bias2 + 2 * kU * vh;
  double err_den = (sq > 0 ? err_vh / (2 * sq) : std::sqrt(err_vh)) + 2 * kU * den;
  double err_q = err_mh / den + std::fabs(q) * err_den / den + kU * std::fabs(q);
  double wdp = decay * p, upd = q + wdp, step = hp.lr * upd;
  double err_step = hp.lr * (err_q + kU * std::fabs(wdp) + kU * std::fabs(upd)) + kU * std::fabs(step);
  r.p = p - step;
  r.err_p = err_step;
  return r;
}

const char *kAdamRefWhy =
    "first-order propagation of each float rounding of adamw.h's sequence (u of each value), "
    "plus half an ulp of the result";

OpCase adamw_case(int64_t n, int step, float grad_scale, bool zero_state) {
  OpCase c;
  const drl_adamw_hparams hp = {3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, step, grad_scale};
  auto vv = random_normal(n, 1e-3f, 13);
  for (auto &e : vv) e = zero_state ? 0.0f : std::fabs(e);
  Tol ref = plus_ulps(magnitude(1, kAdamRefWhy), 0.5);
  Tol dev = exact("drl_adamw_element: every op explicitly rounded, constants rounded once on the host (adamw.h)");
  int g = c.in("grads", random_normal(n, 0.1f, 11));
  int pp = c.inout("params", random_normal(n, 1.0f, 10), ref, dev);
  int m = c.inout("m", zero_state ? std::vector<float>(n, 0.0f) : random_normal(n, 0.01f, 12), ref, dev);
  int v = c.inout("v", vv, ref, dev);
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_adamw(d, PF(pp), PF(g), PF(m), PF(v), n, hp); };
  c.ref = [=](OpCase &c, Want &w) {
    for (int i : {pp, m, v}) {
      w[i] = zeros(n);
      c.t[i].mag = zeros(n);
    }
    for (int64_t i = 0; i < n; ++i) {
      AdamRef r = adam_ref(c.f(pp)[i], c.f(g)[i], c.f(m)[i], c.f(v)[i], hp, hp.weight_decay);
      w[pp][i] = r.p;
      w[m][i] = r.m;
      w[v][i] = r.v;
      c.t[pp].mag[i] = r.err_p;
      c.t[m].mag[i] = r.err_m;
      c.t[v].mag[i] = r.err_v;
    }
  };
  return c;
}

// Three tensors (weight decay on the first and last), stepped over the shard [lo, hi) of their flat buffer.
OpCase adamw_layout_case(int64_t rows, int64_t lo, int64_t hi) {
  OpCase c;
  const int64_t shapes[3][2] = {{rows, 20}, {17, 1}, {9, 4}};
  const int decays[3] = {1, 0, 1};
  const int64_t total = rows * 20 + 17 + 36, n = hi - lo;
  const drl_adamw_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 2, 1.0f};
  Tol ref = plus_ulps(magnitude(1, kAdamRefWhy), 0.5);
  Tol dev = exact("drl_adamw on each tensor's part of the shard, the same bits on both backends");
  auto vv = random_normal(n, 1e-3f, 23);
  for (auto &e : vv) e = std::fabs(e);
  int g = c.in("grads", random_normal(total, 0.1f, 21));
  int pp = c.inout("params", random_normal(total, 1.0f, 20), ref, dev);
  int m = c.inout("m", random_normal(n, 0.01f, 22), ref, dev), v = c.inout("v", vv, ref, dev);
  c.run = [=](const drl_device *d, OpPtrs p) {
    drl_layout lay;
    drl_status st = drl_layout_init(&lay, 3);
    const char *names[3] = {"w", "g", "b"};
    for (int k = 0; k < 3 && st == DRL_OK; ++k)
      st = drl_layout_add(&lay, names[k], shapes[k][0], shapes[k][1], decays[k]);
    if (st == DRL_OK) st = drl_adamw_layout(d, &lay, PF(pp), PF(g), PF(m), PF(v), lo, hi, hp);
    drl_layout_free(&lay);
    return st;
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[pp] = as_double(c, pp);
    c.t[pp].mag = zeros(total);
    w[m] = zeros(n);
    w[v] = zeros(n);
    c.t[m].mag = zeros(n);
    c.t[v].mag = zeros(n);
    for (int64_t i = lo; i < hi; ++i) {
      int k = i < shapes[0][0] * 20 ? 0 : (i < shapes[0][0] * 20 + 17 ? 1 : 2);
      AdamRef r =
          adam_ref(c.f(pp)[i], c.f(g)[i], c.f(m)[i - lo], c.f(v)[i - lo], hp, decays[k] ? hp.weight_decay : 0.0);
      w[pp][i] = r.p;
      w[m][i - lo] = r.m;
      w[v][i - lo] = r.v;
      c.t[pp].mag[i] = r.err_p;
      c.t[m].mag[i - lo] = r.err_m;
      c.t[v].mag[i - lo] = r.err_v;
    }
  };
  return c;
}

// ================================================================ deterministic sum of squares (fixed layout)

// Normals scaled by 2^[-20, 20]: a wide range, so any difference in summation order would show in the bits.
std::vector<float> wide_values(int64_t n, uint32_t seed) {
  auto x = random_normal(n, 1.0f, seed);
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> e(-20, 20);
  for (float &v : x) v = std::ldexp(v, e(rng));
  return x;
}

OpCase sum_squares_case(int64_t n) {
  OpCase c;
  int x = c.in("x", wide_values(n, (uint32_t)n + 1));
  // Both sums are of n positive doubles (the squares of floats are exact): each within n 2^-53 of the exact sum.
  int out = c.out("out", Ty::F64, 1,
                  near(0, 2.0 * (double)std::max<int64_t>(n, 1) * 0x1p-53,
                       "two double sums of n "
                       "positive terms"),
                  exact("the chunk / lane / tree layout of reduce.h on both backends"), true);
  int scr = c.scratch("scratch", [=](const drl_device *d) { return drl_reduce_scratch_bytes(d, n); });
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_sum_squares(d, (double *)p[out], n ? PF(x) : nullptr, n, n ? p[scr] : nullptr);
  };
  c.ref = [=](OpCase &c, Want &w) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += (double)c.f(x)[i] * c.f(x)[i];
    w[out] = {s};
  };
  return c;
}

OpCase sum_squares_partials_case(int64_t n) {
  OpCase c;
  const int64_t chunks = drl_reduce_chunks(n);
  int x = c.in("x", wide_values(n, (uint32_t)n + 2));
  int out = c.out("partials", Ty::F64, chunks,
                  near(0, 2.0 * DRL_REDUCE_CHUNK * 0x1p-53,
                       "two double sums of 4096 "
                       "positive terms per chunk"),
                  exact("the chunk / lane / tree layout of reduce.h on both backends"), true);
  int scr = c.scratch("scratch", [=](const drl_device *d) { return drl_reduce_scratch_bytes(d, n); });
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_sum_squares_partials(d, (double *)p[out], PF(x), n, p[scr]);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = zeros(chunks);
    for (int64_t i = 0; i < n; ++i) w[out][i / DRL_REDUCE_CHUNK] += (double)c.f(x)[i] * c.f(x)[i];
  };
  return c;
}

// ================================================================ GEMM (OpenBLAS vs cuBLAS: a stated bound)

struct GemmShape {
  int ta, tb, M, N, K;
  float alpha, beta;
  int batch;   // 1: drl_gemm
  bool tf32;   // the GPU may use TF32 for this case
  bool nan_c;  // C starts as NaN (beta = 0 must overwrite it)
};

std::string gemm_label(const GemmShape &s) {
  std::string l = "ta=" + std::to_string(s.ta) + " tb=" + std::to_string(s.tb) + " M=" + std::to_string(s.M) +
                  " N=" + std::to_string(s.N) + " K=" + std::to_string(s.K);
  if (s.batch > 1) l += " batch=" + std::to_string(s.batch);
  if (s.beta != 0) l += " beta=" + std::to_string(s.beta).substr(0, 4);
  if (s.nan_c) l += " C=NaN";
  if (s.tf32) l += " TF32";
  return l;
}

// C = alpha op(A) op(B) + beta C over padded leading dimensions and (batched) padded strides; the padding must stay.
OpCase gemm_case(const GemmShape &s, uint32_t seed) {
  OpCase c;
  const int a_rows = s.ta ? s.K : s.M, a_cols = s.ta ? s.M : s.K, b_rows = s.tb ? s.N : s.K, b_cols = s.tb ? s.K : s.N;
  const int lda = a_cols + 3, ldb = b_cols + 1, ldc = s.N + 5;
  const int64_t sa = (int64_t)a_rows * lda + 16, sb = (int64_t)b_rows * ldb + 8, sc = (int64_t)s.M * ldc + 4;
  int A = c.in("A", random_uniform(sa * s.batch, seed)), B = c.in("B", random_uniform(sb * s.batch, seed + 1));
  auto c0 = random_uniform(sc * s.batch, seed + 2);
  if (s.nan_c) std::fill(c0.begin(), c0.end(), NAN);
  Tol ref = magnitude((s.K + 3) * kU,
                      "a K-term dot product in any order, with or without FMAs, then alpha, beta and "
                      "the add: (K + 3) u of sum |alpha a b| + |beta c|");
  Tol dev = s.tf32 ? magnitude(2e-3, "TF32 rounds the inputs to 10 mantissa bits: about 1e-3 of each product")
                   : magnitude(2e-5,
                               "cuBLAS (TF32 off) and OpenBLAS order the K products differently: 2e-5 of "
                               "sum |alpha a b| + |beta c|");
  if (s.batch > 1) dev = near(1e-5, 1e-5, "cuBLAS (TF32 off) and OpenBLAS order the K products differently");
  int C = c.inout("C", c0, ref, dev);
  c.run = [=](const drl_device *d, OpPtrs p) {
    drl_device dd = *d;
    dd.allow_tf32 = s.tf32;
    if (s.batch == 1)
      return drl_gemm(&dd, s.ta, s.tb, s.M, s.N, s.K, s.alpha, PF(A), lda, PF(B), ldb, s.beta, PF(C), ldc);
    return drl_gemm_strided_batched(&dd, s.ta, s.tb, s.M, s.N, s.K, s.alpha, PF(A), lda, sa, PF(B), ldb, sb, s.beta,
                                    PF(C), ldc, sc, s.batch);
  };
  // Expected values (or, with want NULL, only the magnitudes).
  auto eval = [=](OpCase &c, std::vector<double> *want) {
    std::vector<double> &mag = c.t[C].mag;
    mag = zeros(c.t[C].count());
    if (want) *want = as_double(c, C);
    for (int b = 0; b < s.batch; ++b)
      for (int i = 0; i < s.M; ++i)
        for (int j = 0; j < s.N; ++j) {
          double acc = 0, m = 0;
          for (int k = 0; k < s.K; ++k) {
            double a = c.f(A)[b * sa + (s.ta ? (int64_t)k * lda + i : (int64_t)i * lda + k)];
            double bb = c.f(B)[b * sb + (s.tb ? (int64_t)j * ldb + k : (int64_t)k * ldb + j)];
            acc += a * bb;
            m += std::fabs(a * bb);
          }
          const int64_t at = b * sc + (int64_t)i * ldc + j;
          double c0v = c.f(C)[at];
          mag[at] = std::fabs(s.alpha) * m + (s.beta != 0 ? std::fabs(s.beta * c0v) : 0.0);
          if (want) (*want)[at] = s.alpha * acc + (s.beta != 0 ? s.beta * c0v : 0.0);
        }
  };
  c.ref = [=](OpCase &c, Want &w) { eval(c, &w[C]); };
  c.mags = [=](OpCase &c) { eval(c, nullptr); };
  return c;
}

// out[rows, out_dim] (+)= inp W^T.
OpCase matmul_forward_case(int rows, int in, int outd, int accumulate) {
  OpCase c;
  int x = c.in("inp", random_uniform((size_t)rows * in, 40)), W = c.in("weight", random_uniform((size_t)outd * in, 41));
  int y = c.inout("out", random_uniform((size_t)rows * outd, 43),
                  magnitude((in + 2) * kU, "an in-term dot product in any order, then the add: of the terms' sizes"),
                  near(2e-5 * std::sqrt((double)in), 1e-5, "cuBLAS vs OpenBLAS order: a few ulp of sqrt(in) |x w|"));
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_matmul_forward(d, PF(y), PF(x), PF(W), rows, in, outd, accumulate);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[y] = zeros((size_t)rows * outd);
    c.t[y].mag = zeros((size_t)rows * outd);
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < outd; ++o) {
        double acc = accumulate ? c.f(y)[(size_t)r * outd + o] : 0.0, m = std::fabs(acc);
        for (int k = 0; k < in; ++k) {
          double t = (double)c.f(x)[(size_t)r * in + k] * c.f(W)[(size_t)o * in + k];
          acc += t;
          m += std::fabs(t);
        }
        w[y][(size_t)r * outd + o] = acc;
        c.t[y].mag[(size_t)r * outd + o] = m;
      }
  };
  return c;
}

// dinp += dout W and dweight += dout^T inp (dweight skipped when with_dw is false).
OpCase matmul_backward_case(int rows, int in, int outd, bool with_dw) {
  OpCase c;
  int x = c.in("inp", random_uniform((size_t)rows * in, 40)), W = c.in("weight", random_uniform((size_t)outd * in, 41));
  int dy = c.in("dout", random_uniform((size_t)rows * outd, 42));
  int dx =
      c.inout("dinp", random_uniform((size_t)rows * in, 44),
              magnitude((outd + 2) * kU, "an out_dim-term dot product in any order, then the add"),
              near(2e-5 * std::sqrt((double)outd), 1e-5, "cuBLAS vs OpenBLAS order: a few ulp of sqrt(out) |dy w|"));
  int dw = with_dw ? c.inout("dweight", random_uniform((size_t)outd * in, 45),
                             magnitude((rows + 2) * kU, "a rows-term dot product in any order, then the add"),
                             near(2e-5 * std::sqrt((double)rows), 1e-5,
                                  "cuBLAS vs OpenBLAS order: a few ulp of sqrt(rows) |dy x|"))
                   : -1;
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_matmul_backward(d, PF(dx), dw < 0 ? nullptr : PF(dw), PF(dy), PF(x), PF(W), rows, in, outd);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[dx] = as_double(c, dx);
    c.t[dx].mag.assign(w[dx].size(), 0);
    for (size_t i = 0; i < w[dx].size(); ++i) c.t[dx].mag[i] = std::fabs(w[dx][i]);
    if (dw >= 0) {
      w[dw] = as_double(c, dw);
      c.t[dw].mag.assign(w[dw].size(), 0);
      for (size_t i = 0; i < w[dw].size(); ++i) c.t[dw].mag[i] = std::fabs(w[dw][i]);
    }
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < outd; ++o) {
        double g = c.f(dy)[(size_t)r * outd + o];
        for (int k = 0; k < in; ++k) {
          double t = g * c.f(W)[(size_t)o * in + k];
          w[dx][(size_t)r * in + k] += t;
          c.t[dx].mag[(size_t)r * in + k] += std::fabs(t);
          if (dw >= 0) {
            double u = g * c.f(x)[(size_t)r * in + k];
            w[dw][(size_t)o * in + k] += u;
            c.t[dw].mag[(size_t)o * in + k] += std::fabs(u);
          }
        }
      }
  };
  return c;
}

// ================================================================ Philox streams (integer math: bit-identical)

const drl_rng_stream kRngStreams[] = {{0, 0, 0}, {0x123456789abcdefull, 77, 0}};
uint32_t rng_tag(int which) { return which ? drl_rng_tag(DRL_RNG_SPSA, 3, 9) : 0; }

const char *dist_name(drl_rng_dist d) {
  switch (d) {
    case DRL_DIST_U32:
      return "u32";
    case DRL_DIST_UNIFORM:
      return "uniform";
    case DRL_DIST_RADEMACHER:
      return "rademacher";
    case DRL_DIST_NORMAL:
      return "normal";
  }
  return "?";
}

OpCase rng_fill_case(uint64_t n, int which, uint64_t offset, drl_rng_dist dist) {
  OpCase c;
  drl_rng_stream s = kRngStreams[which];
  s.tag = rng_tag(which);
  Tol dev = exact("integer Philox and exactly rounded transforms (philox.h) on both backends");
  Tol ref = dist == DRL_DIST_NORMAL
                ? plus_ulps(magnitude(1,
                                      "the engine's float log and sin / cos polynomials vs double Box-Muller: "
                                      "7e-7 of the radius"),
                            1)
                : exact("Philox words and exact transforms: the independent reference's bits");
  int out = c.out("out", dist == DRL_DIST_U32 ? Ty::U32 : Ty::F32, n, ref, dev);
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_rng_fill(d, p[out], n, s, offset, dist); };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = zeros(n);
    c.t[out].mag = zeros(n);
    for (uint64_t k = 0; k < n; ++k) {
      uint64_t e = offset + k;
      uint32_t word = ref_word(s.seed, s.step, s.tag, e);
      double rad = 0;
      switch (dist) {
        case DRL_DIST_U32:
          w[out][k] = word;
          break;
        case DRL_DIST_UNIFORM:
          w[out][k] = (double)(word >> 8) * 0x1p-24;
          break;
        case DRL_DIST_RADEMACHER:
          w[out][k] = ref_rademacher(s.seed, s.step, s.tag, e);
          break;
        case DRL_DIST_NORMAL:
          w[out][k] = ref_normal(s.seed, s.step, s.tag, e, &rad);
          c.t[out].mag[k] = normal_err(rad);
          break;
      }
    }
  };
  return c;
}

// ================================================================ rank_sum (a fixed tree: bit-identical)

OpCase rank_sum_case(int count, int64_t n, bool in_place) {
  OpCase c;
  int depth = 1;
  while ((1 << (depth - 1)) < count) ++depth;
  Tol ref = magnitude(depth * kU, "each piece passes through at most log2(count) + 1 rounded adds of the tree");
  Tol dev = exact("drl_tree_sum_elem (on the GPU drl_tree_sum_unrolled up to 16 pieces), the same tree of drl_fadd on "
                  "both backends (rank_sum.h)");
  auto x = random_normal((size_t)count * n, 100.0f, 20 + count);
  int in, out;
  if (in_place) {
    in = out = c.inout("in", x, ref, dev);
  } else {
    in = c.in("in", x);
    out = c.out("out", Ty::F32, n, ref, dev);
  }
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_rank_sum(d, PF(out), PF(in), count, n); };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = in_place ? as_double(c, in) : zeros(n);
    c.t[out].mag = zeros(w[out].size());
    for (int64_t k = 0; k < n; ++k) {
      double s = 0, a = 0;
      for (int i = 0; i < count; ++i) {
        s += c.f(in)[(size_t)i * n + k];
        a += std::fabs(c.f(in)[(size_t)i * n + k]);
      }
      w[out][k] = s;
      c.t[out].mag[k] = a;
    }
  };
  return c;
}

// ================================================================ SPSA perturbation and update (bit-identical)

uint32_t spsa_tag(uint32_t q) { return 2u | ((q & 0xFFFu) << 4) | (((q >> 12) & 0xFFFFu) << 16); }

// z_q at flat index i and the bound of its error (0 for Rademacher, exact).
double spsa_z(const drl_spsa_stream &s, uint32_t q, uint64_t i, double *err) {
  if (s.dist == DRL_SPSA_RADEMACHER) {
    *err = 0;
    return ref_rademacher(s.seed, s.step, spsa_tag(q), i);
  }
  double rad;
  double z = ref_normal(s.seed, s.step, spsa_tag(q), i, &rad);
  *err = normal_err(rad);
  return z;
}

const char *kSpsaDevWhy = "Philox z and drl_spsa_update_elem (drl_fmul, drl_fadd) on both backends (spsa.h)";

OpCase spsa_perturb_case(int64_t n, drl_spsa_dist dist, uint64_t offset) {
  OpCase c;
  const drl_spsa_stream s = {0x0123456789abcdefull, 17, dist};
  const uint32_t q = (1234u << 12) | 567u;
  const float coef = 1e-3f;
  int th = c.in("theta", random_uniform(n, 31));
  int out = c.out("out", Ty::F32, n,
                  plus_ulps(magnitude(1,
                                      "theta + coef z: the product and the sum rounded once, plus z's own error "
                                      "for normals"),
                            0.5),
                  exact(kSpsaDevWhy));
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_spsa_perturb(d, PF(out), PF(th), n, offset, s, q, coef); };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = zeros(n);
    c.t[out].mag = zeros(n);
    for (int64_t k = 0; k < n; ++k) {
      double err, z = spsa_z(s, q, offset + k, &err);
      w[out][k] = c.f(th)[k] + (double)coef * z;
      c.t[out].mag[k] = kU * std::fabs(coef * z) + std::fabs(coef) * err;
    }
  };
  return c;
}

OpCase spsa_apply_case(int64_t n, drl_spsa_dist dist, int count, uint64_t offset) {
  OpCase c;
  const drl_spsa_stream s = {99, 4, dist};
  std::mt19937 g(40 + count);
  std::uniform_int_distribution<uint32_t> qd(0, DRL_SPSA_MAX_Q - 1);
  std::uniform_real_distribution<float> cd(-1.0f, 1.0f);
  static_assert(sizeof(drl_spsa_contrib) == 8, "a contribution is two 32-bit words");
  std::vector<drl_spsa_contrib> cs(count);
  for (auto &e : cs) e = {qd(g), cd(g)};
  std::vector<uint32_t> words(2 * (size_t)count);
  std::memcpy(words.data(), cs.data(), words.size() * 4);
  int ic = c.in("contribs", words, true);
  int th = c.inout("theta", random_uniform(n, 32),
                   plus_ulps(magnitude(1,
                                       "count rounded updates: count u of |theta| + sum |coef z|, plus z's own "
                                       "error for normals"),
                             0.5),
                   exact(kSpsaDevWhy));
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_spsa_apply(d, PF(th), n, offset, s, (const drl_spsa_contrib *)p[ic], count);
  };
  c.ref = [=](OpCase &c, Want &w) {
    const drl_spsa_contrib *con = (const drl_spsa_contrib *)c.t[ic].init.data();
    w[th] = zeros(n);
    c.t[th].mag = zeros(n);
    for (int64_t k = 0; k < n; ++k) {
      double acc = c.f(th)[k], a = std::fabs(acc), zerr = 0;
      for (int j = 0; j < count; ++j) {
        double err, z = spsa_z(s, con[j].q, offset + k, &err);
        acc += (double)con[j].coef * z;
        a += std::fabs(con[j].coef * z);
        zerr += std::fabs(con[j].coef) * err;
      }
      w[th][k] = acc;
      c.t[th].mag[k] = count * kU * a + zerr;
    }
  };
  return c;
}

// ================================================================ MoE routing, dispatch and combine (bit-identical)

const char *kMoeDevWhy = "the shared math of moe.h, every float op rounded once, engine-owned e^x, a stable sort";

// Logits of a trained-looking router: a few hot experts, exact ties every 7th row. With separated, every pair of
// distinct selection scores (s + b in double) in a row is at least 1e-5 apart, so float rounding cannot reorder the
// top K against the double reference (rows that fall short are drawn again).
std::vector<float> router_logits(int64_t R, int E, uint32_t seed, const float *bias, bool separated) {
  auto v = random_normal((size_t)R * E, 2.0f, seed);
  for (int e = 0; e < E; e += 3)
    for (int64_t r = 0; r < R; ++r) v[r * E + e] += 0.5f;
  std::mt19937 g(seed + 1);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (int64_t r = 0; r < R; ++r) {
    for (int attempt = 0; attempt < 1000; ++attempt) {
      float *row = v.data() + r * E;
      if (r % 7 == 0 && E > 1) row[E - 1] = row[0];
      if (!separated) break;
      bool ok = true;
      for (int i = 0; i < E && ok; ++i)
        for (int j = i + 1; j < E && ok; ++j) {
          double a = sigmoid(row[i]) + (bias ? bias[i] : 0.0), b = sigmoid(row[j]) + (bias ? bias[j] : 0.0);
          ok = a == b || std::fabs(a - b) >= 1e-5;
        }
      if (ok) break;
      for (int e = 0; e < E; ++e) row[e] = nd(g);
    }
  }
  return v;
}

// The top K of one row in double: descending selection score, ties to the lower expert.
std::vector<int32_t> ref_top_k(const double *score, int E, int K) {
  std::vector<int32_t> idx(E);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return score[a] > score[b]; });
  idx.resize(K);
  return idx;
}

struct MoeShape {
  int64_t R;
  int E, K, C;
};

std::string moe_label(const MoeShape &s) {
  return "R=" + std::to_string(s.R) + " E=" + std::to_string(s.E) + " K=" + std::to_string(s.K) +
         (s.C ? " C=" + std::to_string(s.C) : "");
}

OpCase moe_route_case(const MoeShape &s, int normalize, int with_bias, bool separated) {
  OpCase c;
  const float scale = 2.5f;
  auto bias = random_uniform(s.E, 11, -0.1f, 0.1f);
  int lg = c.in("logits", router_logits(s.R, s.E, 10 + s.E + s.K, with_bias ? bias.data() : nullptr, separated));
  int ib = with_bias ? c.in("bias", bias) : -1;
  Tol dev = exact(kMoeDevWhy);
  int sc = c.out("scores", Ty::F32, (size_t)s.R * s.E, ulps(3, "drl_sigmoid_exact: within 3 ulp (exp.h)"), dev);
  int sel = c.out("sel", Ty::I32, (size_t)s.R * s.K, exact("the top K, ties to the lower expert"), dev);
  int gt = c.out("gates", Ty::F32, (size_t)s.R * s.K,
                 near(0, (s.K + 8) * kU, "the score (3 u), K adds of the normaliser, the division and the scale"), dev);
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_moe_route(d, PF(sc), PI(sel), PF(gt), PF(lg), ib < 0 ? nullptr : PF(ib), s.R, s.E, s.K, normalize,
                         scale);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[sc] = zeros((size_t)s.R * s.E);
    w[sel] = zeros((size_t)s.R * s.K);
    w[gt] = zeros((size_t)s.R * s.K);
    std::vector<double> score(s.E), sel_score(s.E);
    for (int64_t r = 0; r < s.R; ++r) {
      for (int e = 0; e < s.E; ++e) {
        score[e] = sigmoid(c.f(lg)[r * s.E + e]);
        sel_score[e] = score[e] + (ib < 0 ? 0.0 : c.f(ib)[e]);
        w[sc][r * s.E + e] = score[e];
      }
      std::vector<int32_t> top = ref_top_k(sel_score.data(), s.E, s.K);
      double denom = 1e-20;
      for (int32_t e : top) denom += score[e];
      for (int k = 0; k < s.K; ++k) {
        w[sel][r * s.K + k] = top[k];
        w[gt][r * s.K + k] = scale * score[top[k]] / (normalize ? denom : 1.0);
      }
    }
  };
  return c;
}

OpCase moe_route_backward_case(const MoeShape &s, int normalize, int aux_mode) {
  OpCase c;
  const float scale = 2.5f;
  auto logits = router_logits(s.R, s.E, 20 + s.E, nullptr, false);
  std::vector<float> scores((size_t)s.R * s.E);
  std::vector<int32_t> selv((size_t)s.R * s.K);
  std::vector<double> row(s.E);
  for (int64_t r = 0; r < s.R; ++r) {
    for (int e = 0; e < s.E; ++e) row[e] = scores[r * s.E + e] = (float)sigmoid(logits[r * s.E + e]);
    std::vector<int32_t> top = ref_top_k(row.data(), s.E, s.K);
    std::copy(top.begin(), top.end(), selv.begin() + r * s.K);
  }
  std::vector<uint8_t> mask(s.R);
  for (int64_t r = 0; r < s.R; ++r) mask[r] = (uint8_t)(r % 5 != 2);
  int dg = c.in("dgates", random_normal((size_t)s.R * s.K, 1.0f, 12)), sc = c.in("scores", scores);
  int sel = c.in("sel", selv);
  int ia = aux_mode ? c.in("aux", random_uniform(s.E, 13, -1.0f, 1.0f)) : -1;
  int im = aux_mode == 2 ? c.in("row_mask", mask) : -1;
  int dl = c.out("dlogits", Ty::F32, (size_t)s.R * s.E,
                 magnitude((s.E + s.K + 12) * kU,
                           "sums over E experts and K gates, a few divisions and products: "
                           "(E + K + 12) u of the terms' magnitudes"),
                 exact(kMoeDevWhy));
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_moe_route_backward(d, PF(dl), PF(dg), PF(sc), PI(sel), s.R, s.E, s.K, normalize, scale,
                                  ia < 0 ? nullptr : PF(ia), im < 0 ? nullptr : (const uint8_t *)p[im]);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[dl] = zeros((size_t)s.R * s.E);
    c.t[dl].mag = zeros((size_t)s.R * s.E);
    std::vector<double> ds(s.E), ds_abs(s.E);
    for (int64_t r = 0; r < s.R; ++r) {
      const float *sr = c.f(sc) + r * s.E, *g = c.f(dg) + r * s.K;
      const int32_t *sl = c.i32(sel) + r * s.K;
      std::fill(ds.begin(), ds.end(), 0.0);
      std::fill(ds_abs.begin(), ds_abs.end(), 0.0);
      if (ia >= 0 && (im < 0 || c.get<uint8_t>(im)[r])) {
        double tot = 0, dot = 0, dot_abs = 0;
        for (int e = 0; e < s.E; ++e) {
          tot += sr[e];
          dot += (double)c.f(ia)[e] * sr[e];
          dot_abs += std::fabs((double)c.f(ia)[e] * sr[e]);
        }
        for (int e = 0; e < s.E; ++e) {
          ds[e] = (c.f(ia)[e] - dot / tot) / tot;
          ds_abs[e] = (std::fabs(c.f(ia)[e]) + dot_abs / tot) / tot;
        }
      }
      if (normalize) {
        double denom = 1e-20, q = 0, q_abs = 0;
        for (int k = 0; k < s.K; ++k) denom += sr[sl[k]];
        for (int k = 0; k < s.K; ++k) {
          q += (double)g[k] * sr[sl[k]];
          q_abs += std::fabs((double)g[k] * sr[sl[k]]);
        }
        for (int k = 0; k < s.K; ++k) {
          ds[sl[k]] += scale * (g[k] - q / denom) / denom;
          ds_abs[sl[k]] += scale * (std::fabs(g[k]) + q_abs / denom) / denom;
        }
      } else {
        for (int k = 0; k < s.K; ++k) {
          ds[sl[k]] += (double)scale * g[k];
          ds_abs[sl[k]] += std::fabs((double)scale * g[k]);
        }
      }
      for (int e = 0; e < s.E; ++e) {
        double sv = sr[e];
        w[dl][r * s.E + e] = ds[e] * sv * (1 - sv);
        c.t[dl].mag[r * s.E + e] = ds_abs[e] * sv * (1 - sv) + std::fabs(ds[e]) * sv;  // 1 - s rounded once
      }
    }
  };
  return c;
}

// Distinct experts per token in [0, E), expert 1 left empty (a zero-length run) where E > 2.
std::vector<int32_t> moe_selection(int64_t R, int E, int K, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> sel((size_t)R * K);
  std::vector<int32_t> experts(E);
  std::iota(experts.begin(), experts.end(), 0);
  for (int64_t r = 0; r < R; ++r) {
    if (K <= E) std::shuffle(experts.begin(), experts.end(), g);
    for (int k = 0; k < K; ++k) {
      int32_t e = K <= E ? experts[k] : (int32_t)(g() % (uint32_t)E);
      sel[r * K + k] = (E > 2 && e == 1) ? 0 : e;
    }
  }
  return sel;
}

OpCase moe_dispatch_case(const MoeShape &s) {
  OpCase c;
  const int64_t n = s.R * s.K;
  int sel = c.in("sel", moe_selection(s.R, s.E, s.K, 30 + s.E));
  Tol ref = exact("a stable sort by expert"), dev = exact(kMoeDevWhy);
  int order = c.out("order", Ty::I32, n, ref, dev), slot = c.out("slot", Ty::I32, n, ref, dev);
  int off = c.out("offsets", Ty::I64, s.E + 1, ref, dev, true);
  int scr = c.scratch("scratch", [=](const drl_device *d) { return drl_moe_dispatch_scratch_bytes(d, s.R, s.K, s.E); });
  c.run = [=](const drl_device *d, OpPtrs p) {
    if (s.R == 0)  // nothing to sort: only the offsets (all 0) are written
      return drl_moe_dispatch(d, nullptr, nullptr, (int64_t *)p[off], nullptr, 0, s.K, s.E, nullptr);
    return drl_moe_dispatch(d, PI(order), PI(slot), (int64_t *)p[off], PI(sel), s.R, s.K, s.E, p[scr]);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[order] = zeros(n);
    w[slot] = zeros(n);
    w[off] = zeros(s.E + 1);
    int64_t pos = 0;
    for (int e = 0; e < s.E; ++e) {
      w[off][e] = (double)pos;
      for (int64_t a = 0; a < n; ++a)
        if (c.i32(sel)[a] == e) {
          w[order][pos] = (double)a;
          w[slot][a] = (double)pos;
          ++pos;
        }
    }
    w[off][s.E] = (double)pos;
  };
  return c;
}

// A random permutation of [0, n) (the order / slot of some dispatch).
std::vector<int32_t> permutation(int64_t n, uint32_t seed) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  std::mt19937 g(seed);
  std::shuffle(v.begin(), v.end(), g);
  return v;
}

OpCase moe_gather_case(const MoeShape &s) {
  OpCase c;
  const int64_t n = s.R * s.K;
  int x = c.in("in", random_normal((size_t)s.R * s.C, 1.0f, 31)), order = c.in("order", permutation(n, 32));
  int out = c.out("out", Ty::F32, (size_t)n * s.C, exact("a copy of the token's row"), exact(kMoeDevWhy));
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_moe_gather(d, PF(out), PF(x), PI(order), s.R, s.K, s.C); };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = zeros((size_t)n * s.C);
    for (int64_t q = 0; q < n; ++q)
      for (int k = 0; k < s.C; ++k) w[out][q * s.C + k] = c.f(x)[(size_t)(c.i32(order)[q] / s.K) * s.C + k];
  };
  return c;
}

OpCase moe_combine_case(const MoeShape &s, bool weighted) {
  OpCase c;
  const int64_t n = s.R * s.K;
  int y = c.in("y", random_normal((size_t)n * s.C, 1.0f, 32)), slot = c.in("slot", permutation(n, 33));
  int wt = weighted ? c.in("w", random_uniform(n, 34, 0.0f, 1.0f)) : -1;
  int out = c.inout("out", random_normal((size_t)s.R * s.C, 1.0f, 35),
                    magnitude((s.K + 2) * kU, "K products, K adds from 0 and the add to out, each rounded once"),
                    exact(kMoeDevWhy));
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_moe_combine(d, PF(out), PF(y), PI(slot), wt < 0 ? nullptr : PF(wt), s.R, s.K, s.C);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = as_double(c, out);
    c.t[out].mag.assign(w[out].size(), 0);
    for (int64_t r = 0; r < s.R; ++r)
      for (int k = 0; k < s.C; ++k) {
        double acc = 0, a = std::fabs(w[out][r * s.C + k]);
        for (int j = 0; j < s.K; ++j) {
          double t = (wt < 0 ? 1.0 : (double)c.f(wt)[r * s.K + j]) * c.f(y)[(size_t)c.i32(slot)[r * s.K + j] * s.C + k];
          acc += t;
          a += std::fabs(t);
        }
        w[out][r * s.C + k] += acc;
        c.t[out].mag[r * s.C + k] = a;
      }
  };
  return c;
}

OpCase moe_combine_backward_case(const MoeShape &s) {
  OpCase c;
  const int64_t n = s.R * s.K;
  int dout = c.in("dout", random_normal((size_t)s.R * s.C, 1.0f, 36)),
      y = c.in("y", random_normal((size_t)n * s.C, 1.0f, 37));
  int slot = c.in("slot", permutation(n, 38)), wt = c.in("w", random_uniform(n, 39, 0.0f, 1.0f));
  int dy = c.out("dy", Ty::F32, (size_t)n * s.C, ulps(0.5, "one rounded product"), exact(kMoeDevWhy));
  int dw = c.out("dw", Ty::F32, n,
                 plus_ulps(magnitude(s.C * 0x1p-53, "a double sum of exact products, rounded to float once"), 0.5),
                 exact(kMoeDevWhy));
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_moe_combine_backward(d, PF(dy), PF(dw), PF(dout), PF(y), PI(slot), PF(wt), s.R, s.K, s.C);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[dy] = zeros((size_t)n * s.C);
    w[dw] = zeros(n);
    c.t[dw].mag = zeros(n);
    for (int64_t a = 0; a < n; ++a) {
      const int64_t r = a / s.K, q = c.i32(slot)[a];
      for (int k = 0; k < s.C; ++k) {
        double go = c.f(dout)[r * s.C + k], yv = c.f(y)[q * s.C + k];
        w[dy][q * s.C + k] = (double)c.f(wt)[a] * go;
        w[dw][a] += go * yv;
        c.t[dw].mag[a] += std::fabs(go * yv);
      }
    }
  };
  return c;
}

// ================================================================ time embedding (engine sin / cos: bit-identical)

OpCase time_embed_case(int64_t rows, int half, double max_freq) {
  OpCase c;
  std::vector<float> freq(half);
  drl_time_embed_freqs(freq.data(), half, max_freq);
  auto t = random_uniform(rows, 40 + half, -1.0f, 2.0f);
  // +-0, tiny and negative times (the fraction of a negative product rounds to 1), the one inexact reduction of
  // drl_rng_sincos2pi, no fraction bits left (2^24, 5e5 times large frequencies), NaN.
  const float special[] = {0.0f,    -0.0f, 1.0f, 0.5f, 1e-8f, -1e-8f, 1e-7f, -0x1p-30f, -0.3f, 0.125f - 0x1p-27f,
                           0x1p24f, 5e5f,  NAN};
  for (size_t i = 0; i < sizeof special / sizeof *special && (int64_t)(i * 101) < rows; ++i) t[i * 101] = special[i];
  int it = c.in("t", t), fr = c.in("freq", freq);
  int out = c.out("out", Ty::F32, (size_t)rows * 2 * half,
                  magnitude(1,
                            "the sin / cos polynomials (1e-6) and the turns the float product f t and, below 0, "
                            "its fraction lose (half an ulp each), times 2 pi"),
                  exact("the turn reduction and drl_rng_sincos2pi, explicitly rounded (time_embed.h)"));
  c.run = [=](const drl_device *d, OpPtrs p) { return drl_time_embed(d, PF(out), PF(it), PF(fr), rows, half); };
  c.ref = [=](OpCase &c, Want &w) {
    w[out] = zeros((size_t)rows * 2 * half);
    c.t[out].mag = zeros(w[out].size());
    for (int64_t r = 0; r < rows; ++r)
      for (int k = 0; k < half; ++k) {
        double ft = (double)c.f(fr)[k] * c.f(it)[r];
        float pf = (float)ft;
        double lost = 0.5 * fulp(pf) + (pf < 0 ? 0x1p-25 : 0.0);
        w[out][(size_t)r * 2 * half + 2 * k] = std::sin(2 * kPi * ft);
        w[out][(size_t)r * 2 * half + 2 * k + 1] = std::cos(2 * kPi * ft);
        c.t[out].mag[(size_t)r * 2 * half + 2 * k] = c.t[out].mag[(size_t)r * 2 * half + 2 * k + 1] =
            1e-6 + 2 * kPi * lost;
      }
  };
  return c;
}

// ================================================================ the flow SDE step (shared row math: bit-identical)

// SDE rows as the sampler makes them: steps of a T = 20, shift 3 grid (t = 1 included), sigma from the Flow-GRPO
// formula with noise a in [0.3, 1.2] and growth in [1, 2], every ode_every-th row an ODE row (sigma 0), scattered
// noise indices above 2^34, and an upstream gradient per row.
struct SdeRows {
  std::vector<float> x, v, t, dt, sigma, dlogp;
  std::vector<uint64_t> noise;
};

SdeRows sde_rows(int64_t rows, int D, uint32_t seed, int ode_every) {
  SdeRows b;
  b.x = random_normal((size_t)rows * D, 1.0f, seed);
  b.v = random_normal((size_t)rows * D, 1.5f, seed + 1);
  b.dlogp = random_uniform(rows, seed + 4, -2.0f, 2.0f);
  auto a = random_uniform(rows, seed + 2, 0.3f, 1.2f), g = random_uniform(rows, seed + 3, 1.0f, 2.0f);
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
    b.sigma[r] = (ode_every > 0 && r % ode_every == 0) ? 0.0f : drl_sde_sigma(a[r], g[r], grid[k], grid[1]);
    b.noise[r] = 77ull + 13ull * (uint64_t)((r * 101) % (rows + 3)) + ((uint64_t)1 << 34);
  }
  return b;
}

const drl_rng_stream kSdeStream = {0xD1CEull, 11, drl_rng_tag(DRL_RNG_SDE, 21, 0)};
const char *kSdeDevWhy = "drl_sde_row: every float and double op rounded once, engine-owned log and normals (sde.h)";

// The SDE mean of one element in double and a bound on what the float sequence of sde.h loses computing it.
double sde_mean(double x, double v, double t, double dt, double sigma, double *err) {
  if (sigma == 0) {
    *err = kU * (std::fabs(v * dt) + std::fabs(x + v * dt));
    return x + v * dt;
  }
  double coef = sigma * sigma / (2 * t), w = x + (1 - t) * v, drift = v + coef * w, mean = x + drift * dt;
  *err = 6 * kU *
         (std::fabs(x) + (std::fabs(v) + std::fabs(coef) * (std::fabs(x) + std::fabs((1 - t) * v))) * std::fabs(dt));
  return mean;
}

OpCase sde_step_case(int64_t rows, int D, int mean_over_dims, int alias) {
  OpCase c;
  SdeRows b = sde_rows(rows, D, 50 + D, 5);
  Tol dev = exact(kSdeDevWhy);
  Tol ref_x = plus_ulps(magnitude(1,
                                  "the mean's float ops (6 u of its terms) and the noise sd eps (sd 3 u, eps the "
                                  "engine Box-Muller's error)"),
                        0.5);
  Tol ref_lp = with_zeros(magnitude(1,
                                    "the residual's and sd's roundings carried into the Gaussian log-density, "
                                    "4 u of the quadratic term, the float log (an ulp)"));
  // alias 1: x_next is x (with logp); alias 2: x_next is v (without logp).
  int x = alias == 1 ? c.inout("x", b.x, ref_x, dev) : c.in("x", b.x);
  int v = alias == 2 ? c.inout("v", b.v, ref_x, dev) : c.in("v", b.v);
  int it = c.in("t", b.t), idt = c.in("dt", b.dt), is = c.in("sigma", b.sigma), inz = c.in("noise_index", b.noise);
  int xn = alias == 1 ? x : alias == 2 ? v : c.out("x_next", Ty::F32, (size_t)rows * D, ref_x, dev);
  int lp = alias == 2 ? -1 : c.out("logp", Ty::F32, rows, ref_lp, dev);
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_sde_step(d, PF(xn), lp < 0 ? nullptr : PF(lp), PF(x), PF(v), PF(it), PF(idt), PF(is),
                        (const uint64_t *)p[inz], kSdeStream, rows, D, mean_over_dims);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[xn] = zeros((size_t)rows * D);
    c.t[xn].mag = zeros((size_t)rows * D);
    if (lp >= 0) {
      w[lp] = zeros(rows);
      c.t[lp].mag = zeros(rows);
    }
    for (int64_t r = 0; r < rows; ++r) {
      double t = c.f(it)[r], dt = c.f(idt)[r], sigma = c.f(is)[r];
      double sd = sigma * std::sqrt(-dt), quad = 0, err_quad = 0;
      for (int d = 0; d < D; ++d) {
        const size_t i = (size_t)r * D + d;
        double err_mean, mean = sde_mean(c.f(x)[i], c.f(v)[i], t, dt, sigma, &err_mean);
        if (sigma == 0) {
          w[xn][i] = mean;
          c.t[xn].mag[i] = err_mean;
          continue;
        }
        double rad, eps = ref_normal(kSdeStream.seed, kSdeStream.step, kSdeStream.tag,
                                     c.get<uint64_t>(inz)[r] * (uint64_t)D + d, &rad);
        double e = sd * eps, err_e = sd * normal_err(rad) + 3 * kU * std::fabs(e);
        w[xn][i] = mean + e;
        c.t[xn].mag[i] = err_mean + err_e;
        quad += eps * eps / 2;
        // The residual the op sees is x_next - mean of its own floats: sd eps up to err_e and x_next's rounding.
        err_quad += std::fabs(eps) * (err_e + kU * std::fabs(mean + e)) / sd;
      }
      if (lp < 0) continue;
      if (sigma == 0) {
        w[lp][r] = 0;
        continue;
      }
      double norm = D * (std::log(sd) + 0.5 * std::log(2 * kPi)), lpv = -quad - norm;
      double err = err_quad + 4 * kU * quad + D * (3 * kU + kU * std::fabs(std::log(sd))) + kU * std::fabs(lpv);
      w[lp][r] = mean_over_dims ? lpv / D : lpv;
      c.t[lp].mag[r] = mean_over_dims ? err / D : err;
    }
  };
  return c;
}

// The training pass: the log-density of a given x_next (a sample under v, evaluated under a moved v2) and its
// gradient into dv.
struct SdeEval {
  SdeRows b;
  std::vector<float> xn, v2, dv0;
};

SdeEval sde_eval_rows(int64_t rows, int D, int mean_over_dims) {
  SdeEval s;
  s.b = sde_rows(rows, D, 70 + D, 7);
  s.xn.resize((size_t)rows * D);
  drl_sde_step_cpu(s.xn.data(), nullptr, s.b.x.data(), s.b.v.data(), s.b.t.data(), s.b.dt.data(), s.b.sigma.data(),
                   s.b.noise.data(), kSdeStream, rows, D, mean_over_dims);
  s.v2 = s.b.v;
  auto shift = random_uniform(s.v2.size(), 71 + D, -0.3f, 0.3f);
  for (size_t i = 0; i < s.v2.size(); ++i) s.v2[i] += shift[i];
  s.dv0 = random_uniform(s.v2.size(), 73 + D, -1.0f, 1.0f);
  return s;
}

// on_policy: evaluated under the sampling velocity, as the first step of every update does: with the CPU's own step
// giving the same bits (tests/test_flow_kernels.cc), the GPU's ratio to the CPU's sample is then exactly 1 too.
OpCase sde_logprob_case(int64_t rows, int D, int mean_over_dims, bool on_policy = false) {
  OpCase c;
  SdeEval s = sde_eval_rows(rows, D, mean_over_dims);
  int xn = c.in("x_next", s.xn), x = c.in("x", s.b.x), v = c.in("v", on_policy ? s.b.v : s.v2), it = c.in("t", s.b.t);
  int idt = c.in("dt", s.b.dt), is = c.in("sigma", s.b.sigma);
  int lp = c.out("logp", Ty::F32, rows,
                 with_zeros(magnitude(1,
                                      "the float mean's error carried into the quadratic term, 4 u of it, sd's "
                                      "rounding and the float log (an ulp)")),
                 exact(kSdeDevWhy));
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_sde_logprob(d, PF(lp), PF(xn), PF(x), PF(v), PF(it), PF(idt), PF(is), rows, D, mean_over_dims);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[lp] = zeros(rows);
    c.t[lp].mag = zeros(rows);
    for (int64_t r = 0; r < rows; ++r) {
      double t = c.f(it)[r], dt = c.f(idt)[r], sigma = c.f(is)[r];
      if (sigma == 0) continue;
      double sd = sigma * std::sqrt(-dt), var = sd * sd, quad = 0, err_quad = 0;
      for (int d = 0; d < D; ++d) {
        const size_t i = (size_t)r * D + d;
        double err_mean, e = c.f(xn)[i] - sde_mean(c.f(x)[i], c.f(v)[i], t, dt, sigma, &err_mean);
        quad += e * e / (2 * var);
        err_quad += std::fabs(e) * err_mean / var;
      }
      double lpv = -quad - D * (std::log(sd) + 0.5 * std::log(2 * kPi));
      double err = err_quad + 6 * kU * quad + D * (3 * kU + kU * std::fabs(std::log(sd))) + kU * std::fabs(lpv);
      w[lp][r] = mean_over_dims ? lpv / D : lpv;
      c.t[lp].mag[r] = mean_over_dims ? err / D : err;
    }
  };
  return c;
}

OpCase sde_logprob_backward_case(int64_t rows, int D, int mean_over_dims) {
  OpCase c;
  SdeEval s = sde_eval_rows(rows, D, mean_over_dims);
  int dlp = c.in("dlogp", s.b.dlogp), xn = c.in("x_next", s.xn), x = c.in("x", s.b.x), v = c.in("v", s.v2);
  int it = c.in("t", s.b.t), idt = c.in("dt", s.b.dt), is = c.in("sigma", s.b.sigma);
  int dv = c.inout("dv", s.dv0,
                   plus_ulps(magnitude(1,
                                       "the float mean's error times the row's scale, the scale's own roundings "
                                       "(8 u) and the final float add"),
                             0.5),
                   exact(kSdeDevWhy));
  c.run = [=](const drl_device *d, OpPtrs p) {
    return drl_sde_logprob_backward(d, PF(dv), PF(dlp), PF(xn), PF(x), PF(v), PF(it), PF(idt), PF(is), rows, D,
                                    mean_over_dims);
  };
  c.ref = [=](OpCase &c, Want &w) {
    w[dv] = as_double(c, dv);
    c.t[dv].mag = zeros(w[dv].size());
    for (int64_t r = 0; r < rows; ++r) {
      double t = c.f(it)[r], dt = c.f(idt)[r], sigma = c.f(is)[r];
      if (sigma == 0) continue;
      double sd = sigma * std::sqrt(-dt), var = sd * sd;
      double dmean_dv = (1 + sigma * sigma / (2 * t) * (1 - t)) * dt;
      double scale = c.f(dlp)[r] * dmean_dv / var / (mean_over_dims ? D : 1);
      for (int d = 0; d < D; ++d) {
        const size_t i = (size_t)r * D + d;
        double err_mean, e = c.f(xn)[i] - sde_mean(c.f(x)[i], c.f(v)[i], t, dt, sigma, &err_mean);
        w[dv][i] += scale * e;
        c.t[dv].mag[i] = std::fabs(scale) * (err_mean + 8 * kU * std::fabs(e)) + kU * std::fabs(scale * e);
      }
    }
  };
  return c;
}

// ================================================================ the table

std::string n_label(int64_t n) { return "n=" + std::to_string(n); }

std::vector<OpEntry> build_table() {
  std::vector<OpEntry> t;
  const int64_t kStep = 4096LL * 768 + 5;  // a training step's activations, off every block size

  // ---- elementwise
  t.push_back({"add",
               {small("n=1", [] { return add_case(1, false); }), small("n=1000", [] { return add_case(1000, false); }),
                small("n=4099, out aliases a", [] { return add_case(4099, true); }),
                large(n_label(kStep), [=] { return add_case(kStep, false); }),
                large(n_label(kStep) + ", out aliases a", [=] { return add_case(kStep, true); })}});
  t.push_back({"axpy",
               {small("n=1", [] { return axpy_case(1); }), small("n=1001", [] { return axpy_case(1001); }),
                large(n_label(kStep), [=] { return axpy_case(kStep); })}});
  t.push_back({"scale",
               {small("n=1", [] { return scale_case(1); }), small("n=1001", [] { return scale_case(1001); }),
                large(n_label(kStep), [=] { return scale_case(kStep); })}});
  t.push_back(
      {"swiglu_forward",
       {small("n=2", [] { return swiglu_forward_case(2); }), small("n=3001", [] { return swiglu_forward_case(3001); }),
        large("n=8388608", [] { return swiglu_forward_case(4096LL * 2048); })}});
  t.push_back({"swiglu_backward",
               {small("n=2", [] { return swiglu_backward_case(2); }),
                small("n=3001", [] { return swiglu_backward_case(3001); }),
                large("n=8388608", [] { return swiglu_backward_case(4096LL * 2048); })}});

  // ---- SiLU, bias, time embedding of the flow network (65536 rows x 256 hidden: a training step)
  const int64_t kRows = 65536, kHidden = 256, kSilu = kRows * kHidden + 7;
  std::vector<float> nonfinite = {NAN, INFINITY, -INFINITY, 1.0f, -1.0f};
  t.push_back(
      {"silu_forward",
       {small("n=1", [] { return silu_forward_case(1, false, {0.5f}); }),
        small("n=5003 with the clamp's tails", [] { return silu_forward_case(5003, false, activations(5003, 10)); }),
        small("n=5003, out aliases x", [] { return silu_forward_case(5003, true, activations(5003, 10)); }),
        large(n_label(kSilu), [=] { return silu_forward_case(kSilu, false, activations(kSilu, 10)); }),
        large(n_label(kSilu) + ", out aliases x",
              [=] { return silu_forward_case(kSilu, true, activations(kSilu, 10)); }),
        large("NaN and infinities", [=] { return silu_forward_case(5, false, nonfinite); })}});
  t.push_back(
      {"silu_backward",
       {small("n=1", [] { return silu_backward_case(1, false, {-1.25f}); }),
        small("n=5003 with the clamp's tails", [] { return silu_backward_case(5003, false, activations(5003, 12)); }),
        small("n=5003, dx aliases dout", [] { return silu_backward_case(5003, true, activations(5003, 12)); }),
        large(n_label(kSilu), [=] { return silu_backward_case(kSilu, false, activations(kSilu, 12)); }),
        large(n_label(kSilu) + ", dx aliases dout",
              [=] { return silu_backward_case(kSilu, true, activations(kSilu, 12)); }),
        large("NaN and infinities", [=] { return silu_backward_case(5, false, nonfinite); })}});
  {
    // Columns below, at and above the 32-column blocks, rows below, at and above the 128-row tiles, a long tail of
    // rows (100000 = 781 tiles + 32), a wide short matrix; then the training step's hidden layer; then Qwen2's q/k/v
    // biases (14 heads x 64 = 896, 2 kv heads x 64 = 128) over a batch of tokens.
    const std::pair<int64_t, int> small_shapes[] = {{1, 1}, {7, 3}, {129, 33}, {3, 100}, {300, 65}, {37, 896}};
    const std::pair<int64_t, int> large_shapes[] = {{128, 32},   {1000, 65},  {4097, 256},     {3, 1000},
                                                    {100000, 2}, {kRows, 67}, {kRows, kHidden}, {8192, 896},
                                                    {8192, 128}};
    OpEntry add{"bias_add", {}}, bwd{"bias_backward", {}};
    uint32_t seed = 1;
    for (auto [rows, cols] : small_shapes) {
      std::string l = "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols);
      add.shapes.push_back(small(l, [=] { return bias_add_case(rows, cols, seed); }));
      bwd.shapes.push_back(small(l, [=] { return bias_backward_case(rows, cols, seed + 1); }));
      seed += 2;
    }
    for (auto [rows, cols] : large_shapes) {
      std::string l = "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols);
      add.shapes.push_back(large(l, [=] { return bias_add_case(rows, cols, seed); }));
      bwd.shapes.push_back(large(l, [=] { return bias_backward_case(rows, cols, seed + 1); }));
      seed += 2;
    }
    t.push_back(add);
    t.push_back(bwd);
  }
  {
    OpEntry e{"time_embed", {}};
    for (auto [half, maxf] : std::vector<std::pair<int, double>>{{1, 16.0}, {4, 16.0}, {8, 1000.0}, {64, 1e4}}) {
      std::string l = "half=" + std::to_string(half) + " max_freq=" + std::to_string((int)maxf);
      e.shapes.push_back(
          small("rows=1400 " + l + ", special times", [=] { return time_embed_case(1400, half, maxf); }));
      e.shapes.push_back(large("rows=65536 " + l, [=] { return time_embed_case(kRows, half, maxf); }));
    }
    t.push_back(e);
  }

  // ---- RMSNorm
  {
    OpEntry fwd{"rmsnorm_forward", {}}, bwd{"rmsnorm_backward", {}};
    // The last two of each: Qwen3's per-head q/k norms, rows x heads rows of head_dim (128; 16 in the fixtures).
    const std::pair<int, int> small_shapes[] = {{1, 1}, {3, 31}, {37, 100}, {65, 64}, {37 * 4, 16}, {9 * 16, 128}};
    const std::pair<int, int> large_shapes[] = {{4096, 768}, {1001, 100}, {4096 * 16, 128}, {4096 * 8, 128}};
    for (auto [N, C] : small_shapes) {
      std::string l = "N=" + std::to_string(N) + " C=" + std::to_string(C);
      fwd.shapes.push_back(small(l, [=] { return rmsnorm_forward_case(N, C, 6); }));
      bwd.shapes.push_back(small(l, [=] { return rmsnorm_backward_case(N, C, 8); }));
    }
    for (auto [N, C] : large_shapes) {
      std::string l = "N=" + std::to_string(N) + " C=" + std::to_string(C);
      fwd.shapes.push_back(large(l, [=] { return rmsnorm_forward_case(N, C, 6); }));
      bwd.shapes.push_back(large(l, [=] { return rmsnorm_backward_case(N, C, 8); }));
    }
    t.push_back(fwd);
    t.push_back(bwd);
  }

  // ---- embedding: a long run per token (V = 32), mostly single occurrences (V = 50257), a padding token's run
  // across many chunks
  t.push_back({"embedding_forward",
               {small("N=50 C=12 V=7", [] { return embedding_forward_case(50, 12, 7); }),
                small("N=300 C=40 V=1000", [] { return embedding_forward_case(300, 40, 1000); }),
                large("N=4096 C=768 V=32", [] { return embedding_forward_case(4096, 768, 32); }),
                large("N=4096 C=768 V=50257", [] { return embedding_forward_case(4096, 768, 50257); })}});
  t.push_back({"embedding_backward",
               {small("N=50 C=12 V=7", [] { return embedding_backward_case(50, 12, 7); }),
                small("N=300 C=40 V=1000", [] { return embedding_backward_case(300, 40, 1000); }),
                small("N=1000 C=40 V=50, 90% token 3", [] { return embedding_backward_case(1000, 40, 50, 3); }),
                large("N=4096 C=768 V=32", [] { return embedding_backward_case(4096, 768, 32); }),
                large("N=4096 C=768 V=50257", [] { return embedding_backward_case(4096, 768, 50257); }),
                large("N=16384 C=768 V=50257, 90% token 0",
                      [] { return embedding_backward_case(16384, 768, 50257, 0); })}});

  // ---- RoPE
  {
    OpEntry fwd{"rope_forward", {}}, bwd{"rope_backward", {}};
    for (auto [N, heads, D, max_pos] : std::vector<std::array<int, 4>>{{16, 2, 6, 64}, {33, 3, 64, 256}}) {
      std::string l = "N=" + std::to_string(N) + " heads=" + std::to_string(heads) + " D=" + std::to_string(D);
      fwd.shapes.push_back(small(l, [=] { return rope_case(N, heads, D, max_pos, false); }));
      bwd.shapes.push_back(small(l, [=] { return rope_case(N, heads, D, max_pos, true); }));
    }
    for (int heads : {8, 4})
      for (int D : {64, 6}) {
        std::string l = "N=512 heads=" + std::to_string(heads) + " D=" + std::to_string(D) + " max_pos=4096";
        fwd.shapes.push_back(large(l, [=] { return rope_case(512, heads, D, 4096, false); }));
        bwd.shapes.push_back(large(l, [=] { return rope_case(512, heads, D, 4096, true); }));
      }
    t.push_back(fwd);
    t.push_back(bwd);
  }

  // ---- attention
  {
    OpEntry fwd{"attention_forward", {}}, bwd{"attention_backward", {}};
    const std::vector<AttnShape> edges = {
        {2, 7, 4, 2, 8, {0, 3}},     // GQA with padding
        {1, 5, 3, 3, 4, {}},         // KV = H, no padding
        {3, 1, 2, 1, 4, {0, 1, 0}},  // T = 1, one batch row all padding
        {2, 6, 4, 1, 6, {6, 2}},     // one kv head, one batch row all padding
        {2, 70, 4, 2, 16, {40, 0}},  // rows longer than two warps
        {1, 33, 8, 8, 32, {}},
    };
    const std::vector<AttnShape> big = {{4, 128, 8, 4, 64, {0, 17, 64, 127}}, {4, 128, 8, 2, 64, {0, 5, 0, 90}}};
    uint32_t seed = 200;
    for (const AttnShape &s : edges) {
      fwd.shapes.push_back(small(attn_label(s), [=] { return attention_forward_case(s, seed); }));
      bwd.shapes.push_back(small(attn_label(s), [=] { return attention_backward_case(s, seed); }));
      seed += 10;
    }
    for (const AttnShape &s : big) {
      fwd.shapes.push_back(large(attn_label(s), [=] { return attention_forward_case(s, seed); }));
      bwd.shapes.push_back(large(attn_label(s), [=] { return attention_backward_case(s, seed); }));
      seed += 10;
    }
    t.push_back(fwd);
    t.push_back(bwd);
  }

  // ---- KV cache
  t.push_back(
      {"kv_append",
       {small("6 slots x 40, kv_dim 96, 45 rows from 50", [] { return kv_append_case(6, 40, 96, 50, 45, true); }),
        small("6 slots x 40, kv_dim 96, rows in order", [] { return kv_append_case(6, 40, 96, 50, 45, false); }),
        large("64 slots x 512, kv_dim 256, 4000 rows",
              [] { return kv_append_case(64, 512, 256, 4096, 4000, true); })}});
  t.push_back(
      {"attention_decode",
       {small("7 rows, 4 prompts x 30 + 9 slots x 70, H=8 KV=2 D=64",
              [] { return attention_decode_case(decode_edges(64), 5); }),
        small("7 rows, 4 prompts x 30 + 9 slots x 70, H=8 KV=2 D=6",
              [] { return attention_decode_case(decode_edges(6), 15); }),
        large("256 rows in groups of 16, prompt 128 + 384 own columns, H=8 KV=2 D=64",
              [] { return attention_decode_case(decode_batch(256, 512, 8, 2, 64), 25); })}});

  // ---- LM head
  {
    OpEntry fwd{"lm_head_forward", {}}, bwd{"lm_head_backward", {}};
    const std::vector<LmShape> smalls = {
        {37, 16, 1, 1.0f, 16, 24}, {64, 32, 13, 0.7f, 16, 24}, {40, 24, 700, 1.3f, 16, 24}};
    const std::vector<LmShape> bigs = {{2048, 256, 32000, 1.0f, 256, 512}, {2048, 256, 13, 0.7f, 256, 512}};
    for (const LmShape &s : smalls) {
      fwd.shapes.push_back(small(lm_label(s), [=] { return lm_head_forward_case(s, true); }));
      bwd.shapes.push_back(small(lm_label(s), [=] { return lm_head_backward_case(s, true, true); }));
    }
    fwd.shapes.push_back(
        small(lm_label(smalls[2]) + ", entropy only", [=] { return lm_head_forward_case(smalls[2], false); }));
    bwd.shapes.push_back(
        small(lm_label(smalls[2]) + ", dx only", [=] { return lm_head_backward_case(smalls[2], true, false); }));
    bwd.shapes.push_back(
        small(lm_label(smalls[2]) + ", dW only", [=] { return lm_head_backward_case(smalls[2], false, true); }));
    for (const LmShape &s : bigs) {
      fwd.shapes.push_back(large(lm_label(s), [=] { return lm_head_forward_case(s, true); }));
      bwd.shapes.push_back(large(lm_label(s), [=] { return lm_head_backward_case(s, true, true); }));
    }
    fwd.shapes.push_back(
        large(lm_label(bigs[0]) + ", entropy only", [=] { return lm_head_forward_case(bigs[0], false); }));
    t.push_back(fwd);
    t.push_back(bwd);
  }

  // ---- optimizer and reductions
  const int64_t kParams = (1 << 20) + 3;
  t.push_back(
      {"adamw",
       {small("n=1000 step 1 from zero state", [] { return adamw_case(1000, 1, 1.0f, true); }),
        small("n=1003 step 2, grad_scale 0.37", [] { return adamw_case(1003, 2, 0.37f, false); }),
        small("n=5 step 3", [] { return adamw_case(5, 3, 1.0f, false); }),
        large(n_label(kParams) + " step 1 from zero state", [=] { return adamw_case(kParams, 1, 1.0f, true); }),
        large(n_label(kParams) + " step 2, grad_scale 0.37", [=] { return adamw_case(kParams, 2, 0.37f, false); }),
        large(n_label(kParams) + " step 3", [=] { return adamw_case(kParams, 3, 1.0f, false); })}});
  t.push_back({"adamw_layout",
               {small("3 tensors, 653 floats, shard [100, 640)", [] { return adamw_layout_case(30, 100, 640); }),
                small("3 tensors, 653 floats, whole", [] { return adamw_layout_case(30, 0, 653); }),
                large("3 tensors, 6e6 floats, shard", [] { return adamw_layout_case(300000, 12345, 5000000); })}});
  {
    OpEntry ss{"sum_squares", {}};
    for (int64_t n : {0L, 1L, 4095L, 4096L, 4097L, 100000L})
      ss.shapes.push_back(small(n_label(n), [=] { return sum_squares_case(n); }));
    for (int64_t n : {1000000L, 10000019L}) ss.shapes.push_back(large(n_label(n), [=] { return sum_squares_case(n); }));
    t.push_back(ss);
  }
  t.push_back({"sum_squares_partials",
               {small("n=1", [] { return sum_squares_partials_case(1); }),
                small("n=4097", [] { return sum_squares_partials_case(4097); }),
                small("n=204817", [] { return sum_squares_partials_case(50 * 4096 + 17); }),
                large("n=1228811", [] { return sum_squares_partials_case(3 * 4096 * 100 + 11); })}});

  // ---- GEMM
  {
    OpEntry g{"gemm", {}}, sb{"gemm_strided_batched", {}};
    uint32_t seed = 20;
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        GemmShape s{ta, tb, 17, 13, 29, 1.25f, -0.5f, 1, false, false};
        g.shapes.push_back(small(gemm_label(s), [=] { return gemm_case(s, seed); }));
        for (int tf32 = 0; tf32 < 2; ++tf32) {
          GemmShape b{ta, tb, 256, 192, 768, 1.25f, -0.5f, 1, tf32 == 1, false};
          g.shapes.push_back(large(gemm_label(b), [=] { return gemm_case(b, seed + 1); }));
        }
        seed += 2;
      }
    for (GemmShape s :
         {GemmShape{0, 0, 3, 4, 0, 1.0f, 0.0f, 1, false, true}, GemmShape{0, 0, 3, 4, 0, 1.0f, 0.5f, 1, false, false},
          GemmShape{0, 1, 5, 6, 7, 1.0f, 0.0f, 1, false, true}})
      g.shapes.push_back(small(gemm_label(s), [=] { return gemm_case(s, 30); }));
    for (GemmShape s : {GemmShape{1, 0, 64, 48, 32, 1.0f, 1.0f, 5, false, false},
                        GemmShape{0, 1, 9, 7, 11, 0.5f, 0.0f, 3, false, false}})
      sb.shapes.push_back(small(gemm_label(s), [=] { return gemm_case(s, 31); }));
    GemmShape s{1, 0, 128, 96, 256, 1.0f, 1.0f, 8, false, false};
    sb.shapes.push_back(large(gemm_label(s), [=] { return gemm_case(s, 32); }));
    t.push_back(g);
    t.push_back(sb);
  }
  t.push_back({"matmul_forward",
               {small("rows=33 in=20 out=12", [] { return matmul_forward_case(33, 20, 12, 0); }),
                small("rows=33 in=20 out=12, accumulate", [] { return matmul_forward_case(33, 20, 12, 1); }),
                large("rows=4096 in=768 out=512, accumulate", [] { return matmul_forward_case(4096, 768, 512, 1); })}});
  t.push_back({"matmul_backward",
               {small("rows=33 in=20 out=12", [] { return matmul_backward_case(33, 20, 12, true); }),
                small("rows=33 in=20 out=12, no dweight", [] { return matmul_backward_case(33, 20, 12, false); }),
                large("rows=4096 in=768 out=512", [] { return matmul_backward_case(4096, 768, 512, true); })}});

  // ---- random streams, the rank tree and SPSA
  {
    OpEntry e{"rng_fill", {}};
    for (int which = 0; which < 2; ++which)
      for (uint64_t off : {0ull, 3ull, (1ull << 33) + 1})
        for (drl_rng_dist dist : {DRL_DIST_U32, DRL_DIST_UNIFORM, DRL_DIST_RADEMACHER, DRL_DIST_NORMAL}) {
          std::string l =
              std::string(dist_name(dist)) + " stream " + std::to_string(which) + " offset " + std::to_string(off);
          e.shapes.push_back(small("n=1001 " + l, [=] { return rng_fill_case(1001, which, off, dist); }));
          e.shapes.push_back(large("n=10000019 " + l, [=] { return rng_fill_case(10000019, which, off, dist); }));
        }
    t.push_back(e);
  }
  {
    // Counts up to 16 take the GPU's unrolled trees, the rest its stack loop.
    OpEntry e{"rank_sum", {}};
    for (int count : {1, 3, 8, 13, 16, 17, 100}) {
      std::string l = "count " + std::to_string(count);
      e.shapes.push_back(small("n=1001 " + l, [=] { return rank_sum_case(count, 1001, false); }));
      e.shapes.push_back(small("n=1001 " + l + ", in place", [=] { return rank_sum_case(count, 1001, true); }));
      if (count > 17) continue;
      e.shapes.push_back(large("n=1000003 " + l, [=] { return rank_sum_case(count, 1000003, false); }));
      e.shapes.push_back(large("n=1000003 " + l + ", in place", [=] { return rank_sum_case(count, 1000003, true); }));
    }
    t.push_back(e);
  }
  {
    OpEntry p{"spsa_perturb", {}}, a{"spsa_apply", {}};
    for (drl_spsa_dist dist : {DRL_SPSA_RADEMACHER, DRL_SPSA_NORMAL}) {
      std::string dn = dist == DRL_SPSA_NORMAL ? "normal" : "rademacher";
      for (uint64_t off : {0ull, 5ull, (1ull << 33) + 3}) {
        std::string l = dn + " offset " + std::to_string(off);
        p.shapes.push_back(small("n=1001 " + l, [=] { return spsa_perturb_case(1001, dist, off); }));
        p.shapes.push_back(large("n=1000003 " + l, [=] { return spsa_perturb_case(1000003, dist, off); }));
      }
      for (int count : {1, 300}) {  // 300 crosses a launch batch
        std::string l = dn + " " + std::to_string(count) + " contributions, offset 7";
        a.shapes.push_back(small("n=1001 " + l, [=] { return spsa_apply_case(1001, dist, count, 7); }));
        a.shapes.push_back(large("n=262147 " + l, [=] { return spsa_apply_case((1 << 18) + 3, dist, count, 7); }));
      }
    }
    t.push_back(p);
    t.push_back(a);
  }

  // ---- MoE
  {
    const std::vector<MoeShape> smalls = {{50, 8, 2, 24}, {40, 64, 6, 16}, {30, 4, 4, 8}};
    const std::vector<MoeShape> bigs = {{4096, 8, 2, 256}, {4096, 64, 6, 256}, {4096, 64, 2, 256}, {4096, 8, 6, 256}};
    OpEntry route{"moe_route", {}}, rb{"moe_route_backward", {}}, disp{"moe_dispatch", {}}, gath{"moe_gather", {}},
        comb{"moe_combine", {}}, cb{"moe_combine_backward", {}};
    for (int normalize : {0, 1})
      for (int bias : {0, 1}) {
        std::string l = std::string(normalize ? " normalized" : "") + (bias ? " with bias" : "");
        for (const MoeShape &s : smalls)
          route.shapes.push_back(small(moe_label(s) + l, [=] { return moe_route_case(s, normalize, bias, true); }));
        for (const MoeShape &s : bigs)
          route.shapes.push_back(large(moe_label(s) + l, [=] { return moe_route_case(s, normalize, bias, false); }));
      }
    for (int normalize : {0, 1})
      for (int aux : {0, 1, 2}) {
        std::string l = std::string(normalize ? " normalized" : "") + (aux == 1   ? " with aux"
                                                                       : aux == 2 ? " with aux on a row mask"
                                                                                  : "");
        for (const MoeShape &s : smalls)
          rb.shapes.push_back(small(moe_label(s) + l, [=] { return moe_route_backward_case(s, normalize, aux); }));
        for (const MoeShape &s : bigs)
          rb.shapes.push_back(large(moe_label(s) + l, [=] { return moe_route_backward_case(s, normalize, aux); }));
      }
    for (const MoeShape &s : smalls) {
      disp.shapes.push_back(small(moe_label(s), [=] { return moe_dispatch_case(s); }));
      gath.shapes.push_back(small(moe_label(s), [=] { return moe_gather_case(s); }));
      comb.shapes.push_back(small(moe_label(s), [=] { return moe_combine_case(s, true); }));
      comb.shapes.push_back(small(moe_label(s) + " unweighted", [=] { return moe_combine_case(s, false); }));
      cb.shapes.push_back(small(moe_label(s), [=] { return moe_combine_backward_case(s); }));
    }
    disp.shapes.push_back(small("R=100 E=1 K=2", [] { return moe_dispatch_case({100, 1, 2, 0}); }));
    disp.shapes.push_back(small("R=0 E=4 K=2", [] { return moe_dispatch_case({0, 4, 2, 0}); }));
    for (const MoeShape &s : bigs) {
      disp.shapes.push_back(large(moe_label(s), [=] { return moe_dispatch_case(s); }));
      gath.shapes.push_back(large(moe_label(s), [=] { return moe_gather_case(s); }));
      comb.shapes.push_back(large(moe_label(s), [=] { return moe_combine_case(s, true); }));
      comb.shapes.push_back(large(moe_label(s) + " unweighted", [=] { return moe_combine_case(s, false); }));
      cb.shapes.push_back(large(moe_label(s), [=] { return moe_combine_backward_case(s); }));
    }
    disp.shapes.push_back(large("R=1000 E=1 K=2", [] { return moe_dispatch_case({1000, 1, 2, 0}); }));
    for (OpEntry *e : {&route, &rb, &disp, &gath, &comb, &cb}) t.push_back(*e);
  }

  // ---- the flow SDE (a warp per row): D below, at and past the 32 lanes, rows mostly off the 8-row blocks, and a
  // training step's (D = 2 and 64 at 65536 rows)
  {
    OpEntry step{"sde_step", {}}, lp{"sde_logprob", {}}, lpb{"sde_logprob_backward", {}};
    const std::pair<int, int64_t> smalls[] = {{1, 301}, {2, 200}, {5, 41}, {64, 20}, {33, 19}, {100, 13}};
    const std::pair<int, int64_t> bigs[] = {{1, 30001}, {2, kRows}, {3, 10000}, {5, 4001}, {8, 3750}, {64, kRows}};
    for (int mean : {1, 0}) {
      std::string m = mean ? " mean over dims" : " sum over dims";
      for (auto [D, rows] : smalls) {
        std::string l = "D=" + std::to_string(D) + " rows=" + std::to_string(rows) + m;
        step.shapes.push_back(small(l, [=] { return sde_step_case(rows, D, mean, 0); }));
        lp.shapes.push_back(small(l, [=] { return sde_logprob_case(rows, D, mean); }));
        lpb.shapes.push_back(small(l, [=] { return sde_logprob_backward_case(rows, D, mean); }));
      }
      step.shapes.push_back(
          small("D=5 rows=41" + m + ", x_next aliases x", [=] { return sde_step_case(41, 5, mean, 1); }));
      lp.shapes.push_back(
          small("D=5 rows=41" + m + ", on policy", [=] { return sde_logprob_case(41, 5, mean, true); }));
      step.shapes.push_back(
          small("D=5 rows=41" + m + ", x_next aliases v, no logp", [=] { return sde_step_case(41, 5, mean, 2); }));
      for (auto [D, rows] : bigs) {
        std::string l = "D=" + std::to_string(D) + " rows=" + std::to_string(rows) + m;
        step.shapes.push_back(large(l, [=] { return sde_step_case(rows, D, mean, 0); }));
        step.shapes.push_back(large(l + ", x_next aliases x", [=] { return sde_step_case(rows, D, mean, 1); }));
        step.shapes.push_back(
            large(l + ", x_next aliases v, no logp", [=] { return sde_step_case(rows, D, mean, 2); }));
        lp.shapes.push_back(large(l, [=] { return sde_logprob_case(rows, D, mean); }));
        lp.shapes.push_back(large(l + ", on policy", [=] { return sde_logprob_case(rows, D, mean, true); }));
        lpb.shapes.push_back(large(l, [=] { return sde_logprob_backward_case(rows, D, mean); }));
      }
    }
    t.push_back(step);
    t.push_back(lp);
    t.push_back(lpb);
  }
  return t;
}

}  // namespace

const std::vector<OpEntry> &op_table() {
  static const std::vector<OpEntry> table = build_table();
  return table;
}
