// The fused LM head on the CPU: log-prob and entropy against a naive double-precision softmax over materialised
// logits, chunking, extreme logits, the uniform case, the backward against finite differences, and determinism.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "test_util.h"

extern "C" {
#include "kernels/lm_head.h"
}

namespace {

struct Problem {
  int N, C, V;
  float temperature;
  std::vector<float> x, W;
  std::vector<int32_t> targets;
};

// x and W normal with a spread that gives logits of a few units; every 5th target masked.
Problem make_problem(int N, int C, int V, float temperature, uint32_t seed) {
  Problem p{N, C, V, temperature, std::vector<float>((size_t)N * C), std::vector<float>((size_t)V * C),
            std::vector<int32_t>(N)};
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  float wscale = 2.0f / std::sqrt((float)std::max(C, 1));
  for (float &v : p.x) v = nd(rng);
  for (float &v : p.W) v = wscale * nd(rng);
  std::uniform_int_distribution<int> td(0, V - 1);
  for (int n = 0; n < N; ++n) p.targets[n] = n % 5 == 3 ? -1 : td(rng);
  return p;
}

// Naive softmax in double over explicitly materialised logits z = x W^T / T.
void ref_forward(const std::vector<double> &x, const std::vector<double> &W, const std::vector<int32_t> &targets, int N,
                 int C, int V, double T, std::vector<double> *lp, std::vector<double> *ent) {
  lp->assign(N, 0.0);
  ent->assign(N, 0.0);
  std::vector<double> z(V);
  for (int n = 0; n < N; ++n) {
    double mx = -INFINITY;
    for (int j = 0; j < V; ++j) {
      double s = 0.0;
      for (int k = 0; k < C; ++k) s += x[(size_t)n * C + k] * W[(size_t)j * C + k];
      z[j] = s / T;
      mx = std::max(mx, z[j]);
    }
    double se = 0.0;
    for (int j = 0; j < V; ++j) se += std::exp(z[j] - mx);
    double lse = mx + std::log(se), pz = 0.0;
    for (int j = 0; j < V; ++j) pz += std::exp(z[j] - lse) * z[j];
    (*lp)[n] = targets[n] < 0 ? 0.0 : z[targets[n]] - lse;
    (*ent)[n] = lse - pz;
  }
}

std::vector<double> to_double(const std::vector<float> &v) { return std::vector<double>(v.begin(), v.end()); }

struct Out {
  std::vector<float> lp, ent;
};

Out forward(const Problem &p, int chunk_rows) {
  drl_device dev;
  EXPECT_EQ(drl_device_open(&dev, DRL_BACKEND_CPU, 0), DRL_OK);
  std::vector<float> scratch(drl_lm_head_scratch_floats(&dev, chunk_rows, p.V));
  Out o{std::vector<float>(p.N, -7.0f), std::vector<float>(p.N, -7.0f)};
  EXPECT_EQ(drl_lm_head_forward(&dev, o.lp.data(), o.ent.data(), p.x.data(), p.W.data(), p.targets.data(), p.N, p.C,
                                p.V, p.temperature, scratch.data(), chunk_rows),
            DRL_OK)
      << drl_last_error();
  return o;
}

struct Grads {
  std::vector<float> dx, dW;
};

Grads backward(const Problem &p, const std::vector<float> &dlogprob, int chunk_rows, float dx_fill = 0.0f,
               float dW_fill = 0.0f) {
  drl_device dev;
  EXPECT_EQ(drl_device_open(&dev, DRL_BACKEND_CPU, 0), DRL_OK);
  std::vector<float> scratch(drl_lm_head_scratch_floats(&dev, chunk_rows, p.V));
  Grads g{std::vector<float>((size_t)p.N * p.C, dx_fill), std::vector<float>((size_t)p.V * p.C, dW_fill)};
  EXPECT_EQ(drl_lm_head_backward(&dev, g.dx.data(), g.dW.data(), dlogprob.data(), p.x.data(), p.W.data(),
                                 p.targets.data(), p.N, p.C, p.V, p.temperature, scratch.data(), chunk_rows),
            DRL_OK)
      << drl_last_error();
  return g;
}

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

// Several shapes, both temperatures, every chunking; masked rows give exactly 0.
TEST(LmHead, MatchesNaiveSoftmax) {
  struct Shape {
    int N, C, V;
  } shapes[] = {{1, 1, 1}, {4, 3, 1}, {7, 16, 13}, {33, 64, 1000}, {9, 24, 4099}, {5, 32, 32000}};
  uint32_t seed = 1;
  for (Shape s : shapes) {
    for (float T : {1.0f, 0.7f}) {
      Problem p = make_problem(s.N, s.C, s.V, T, seed++);
      std::vector<double> lp, ent;
      ref_forward(to_double(p.x), to_double(p.W), p.targets, p.N, p.C, p.V, T, &lp, &ent);
      for (int chunk : {1, 3, s.N, s.N + 4}) {
        Out o = forward(p, chunk);
        for (int n = 0; n < p.N; ++n) {
          SCOPED_TRACE(::testing::Message() << "N=" << s.N << " C=" << s.C << " V=" << s.V << " T=" << T
                                            << " chunk=" << chunk << " row " << n);
          if (p.targets[n] < 0) {
            EXPECT_EQ(o.lp[n], 0.0f);
          }
          EXPECT_NEAR(o.lp[n], lp[n], 5e-6 * (1.0 + std::fabs(lp[n])));
          EXPECT_NEAR(o.ent[n], ent[n], 5e-6 * (1.0 + std::fabs(ent[n])));
        }
      }
    }
  }
}

// The chunking only decides which rows share a GEMM call; the per-row pass is the same code on the same logits.
// With inputs whose products and sums are exact in float (small dyadic rationals) the GEMM is exact whatever its
// tiling, so chunk_rows 1, 3 and >= N must give the same bits. (With general inputs OpenBLAS 0.3.21's per-element
// result depends on its M-tiling and thread count, so only the tolerance of MatchesNaiveSoftmax applies there.)
TEST(LmHead, ChunkingIsBitIdenticalOnExactLogits) {
  const int N = 37, C = 32, V = 3001;
  for (float T : {1.0f, 0.7f}) {
    Problem p = make_problem(N, C, V, T, 42);
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> q(-8, 8);
    for (float &v : p.x) v = q(rng) / 8.0f;
    for (float &v : p.W) v = q(rng) / 16.0f;
    Out ref = forward(p, N);
    for (int chunk : {1, 3, 5, N, 2 * N}) {
      Out o = forward(p, chunk);
      EXPECT_TRUE(same_bits(o.lp, ref.lp)) << "chunk_rows " << chunk << " T " << T;
      EXPECT_TRUE(same_bits(o.ent, ref.ent)) << "chunk_rows " << chunk << " T " << T;
    }
  }
}

// Logits of +-80 (and +-114 at T = 0.7): finite results that match the double reference, never overflow.
TEST(LmHead, LargeLogitsStayFinite) {
  const int N = 4, C = 2, V = 50;
  Problem p{N, C, V, 1.0f, std::vector<float>(N * C), std::vector<float>(V * C), std::vector<int32_t>(N)};
  for (int j = 0; j < V; ++j) {
    p.W[j * C + 0] = 80.0f * (2.0f * j / (V - 1) - 1.0f);  // spans [-80, 80]
    p.W[j * C + 1] = 80.0f;                                 // all equal: a uniform row
  }
  float xs[N][C] = {{1, 0}, {-1, 0}, {0, 1}, {0.5f, -1}};
  for (int n = 0; n < N; ++n) std::copy(xs[n], xs[n] + C, p.x.begin() + n * C);
  p.targets = {0, 0, 17, V - 1};
  for (float T : {1.0f, 0.7f}) {
    p.temperature = T;
    std::vector<double> lp, ent;
    ref_forward(to_double(p.x), to_double(p.W), p.targets, N, C, V, T, &lp, &ent);
    Out o = forward(p, 3);
    for (int n = 0; n < N; ++n) {
      ASSERT_TRUE(std::isfinite(o.lp[n]) && std::isfinite(o.ent[n])) << "row " << n << " T " << T;
      EXPECT_NEAR(o.lp[n], lp[n], 1e-5 * (1.0 + std::fabs(lp[n]))) << "row " << n << " T " << T;
      EXPECT_NEAR(o.ent[n], ent[n], 1e-5) << "row " << n << " T " << T;
      EXPECT_GE(o.ent[n], 0.0f);
    }
    EXPECT_LT(o.lp[0], -150.0f);  // the target sits at -80 against a max of +80
    EXPECT_NEAR(o.ent[2], std::log((double)V), 1e-5);
  }
}

// Equal logits: entropy ln V and log-prob -ln V, for every V including 1.
TEST(LmHead, UniformEntropyIsLnV) {
  for (int V : {1, 2, 13, 1000, 32000}) {
    Problem p = make_problem(3, 8, V, 1.0f, 5);
    std::fill(p.W.begin(), p.W.end(), 0.25f);  // every logit of a row equals sum(x) / 4
    for (int n = 0; n < 3; ++n) p.targets[n] = n % V;
    Out o = forward(p, 2);
    for (int n = 0; n < 3; ++n) {
      EXPECT_NEAR(o.ent[n], std::log((double)V), 1e-6 * (1.0 + std::log((double)V))) << "V " << V;
      EXPECT_NEAR(o.lp[n], -std::log((double)V), 1e-6 * (1.0 + std::log((double)V))) << "V " << V;
    }
  }
}

// dx and dW against central differences of L = sum_n dlogprob[n] logprob[n], in double.
TEST(LmHead, BackwardMatchesFiniteDifferences) {
  struct Shape {
    int N, C, V;
    float T;
  } shapes[] = {{5, 6, 11, 0.7f}, {4, 5, 1, 1.0f}, {3, 4, 7, 1.0f}};
  for (Shape s : shapes) {
    Problem p = make_problem(s.N, s.C, s.V, s.T, 11);
    std::vector<float> dlp(s.N);
    for (int n = 0; n < s.N; ++n) dlp[n] = 0.5f + 0.25f * n - (n % 2);
    std::vector<double> xd = to_double(p.x), Wd = to_double(p.W);
    auto loss = [&](const std::vector<double> &xx, const std::vector<double> &ww) {
      std::vector<double> lp, ent;
      ref_forward(xx, ww, p.targets, s.N, s.C, s.V, s.T, &lp, &ent);
      double L = 0.0;
      for (int n = 0; n < s.N; ++n) L += dlp[n] * lp[n];
      return L;
    };
    const double h = 1e-5;
    std::vector<double> fdx(xd.size()), fdW(Wd.size());
    for (size_t i = 0; i < xd.size(); ++i) {
      std::vector<double> a = xd, b = xd;
      a[i] += h;
      b[i] -= h;
      fdx[i] = (loss(a, Wd) - loss(b, Wd)) / (2 * h);
    }
    for (size_t i = 0; i < Wd.size(); ++i) {
      std::vector<double> a = Wd, b = Wd;
      a[i] += h;
      b[i] -= h;
      fdW[i] = (loss(xd, a) - loss(xd, b)) / (2 * h);
    }
    for (int chunk : {1, 3, s.N}) {
      Grads g = backward(p, dlp, chunk);
      auto rel_err = [](const std::vector<float> &a, const std::vector<double> &fd) {
        double err = 0.0, mag = 0.0;
        for (size_t i = 0; i < fd.size(); ++i) {
          err = std::max(err, std::fabs(a[i] - fd[i]));
          mag = std::max(mag, std::fabs(fd[i]));
        }
        return mag > 0 ? err / mag : err;
      };
      SCOPED_TRACE(::testing::Message() << "N=" << s.N << " C=" << s.C << " V=" << s.V << " chunk=" << chunk);
      if (s.V == 1) {  // a single token has log-prob 0 whatever the inputs
        for (float v : g.dx) EXPECT_EQ(v, 0.0f);
        for (float v : g.dW) EXPECT_EQ(v, 0.0f);
        continue;
      }
      EXPECT_LT(rel_err(g.dx, fdx), 1e-3);
      EXPECT_LT(rel_err(g.dW, fdW), 1e-3);
      for (int n = 0; n < s.N; ++n) {  // masked rows get no gradient at all
        if (p.targets[n] < 0) {
          for (int k = 0; k < s.C; ++k) EXPECT_EQ(g.dx[(size_t)n * s.C + k], 0.0f);
        }
      }
    }
  }
}

// dW accumulates (+=); dx is overwritten even when it held NaN.
TEST(LmHead, BackwardAccumulatesDWAndOverwritesDx) {
  Problem p = make_problem(19, 12, 257, 0.7f, 3);
  std::vector<float> dlp(p.N);
  for (int n = 0; n < p.N; ++n) dlp[n] = 1.0f - 0.1f * n;
  Grads base = backward(p, dlp, 4);
  Grads acc = backward(p, dlp, 4, NAN, 0.5f);
  EXPECT_TRUE(same_bits(acc.dx, base.dx));
  for (size_t i = 0; i < base.dW.size(); ++i) EXPECT_NEAR(acc.dW[i], 0.5f + base.dW[i], 1e-6f) << "dW[" << i << "]";
  // Twice through, accumulating: the second pass adds the same gradient again.
  drl_device dev;
  ASSERT_EQ(drl_device_open(&dev, DRL_BACKEND_CPU, 0), DRL_OK);
  std::vector<float> scratch(drl_lm_head_scratch_floats(&dev, 4, p.V)), dx(base.dx.size()), dW(base.dW.size(), 0.0f);
  for (int rep = 0; rep < 2; ++rep)
    ASSERT_EQ(drl_lm_head_backward(&dev, dx.data(), dW.data(), dlp.data(), p.x.data(), p.W.data(), p.targets.data(),
                                   p.N, p.C, p.V, p.temperature, scratch.data(), 4),
              DRL_OK);
  for (size_t i = 0; i < dW.size(); ++i) EXPECT_NEAR(dW[i], 2.0f * base.dW[i], 1e-6f) << "dW[" << i << "]";
}

// The chunking changes only which rows share a GEMM: gradients agree closely for every chunk size.
TEST(LmHead, BackwardAgreesAcrossChunkings) {
  Problem p = make_problem(23, 16, 1001, 1.0f, 8);
  std::vector<float> dlp(p.N, 1.0f);
  Grads ref = backward(p, dlp, p.N);
  for (int chunk : {1, 3, 7}) {
    Grads g = backward(p, dlp, chunk);
    for (size_t i = 0; i < g.dx.size(); ++i) EXPECT_NEAR(g.dx[i], ref.dx[i], 1e-5f) << "chunk " << chunk;
    for (size_t i = 0; i < g.dW.size(); ++i) EXPECT_NEAR(g.dW[i], ref.dW[i], 1e-5f) << "chunk " << chunk;
  }
}

// Rows are independent and each is one thread's pass in a fixed layout, so the row math gives the same bits for 1 or
// 2 OpenMP threads. The GEMMs are OpenBLAS's: with its OpenMP build, omp_set_num_threads also sets its thread count,
// and its per-element bits then depend on it. So: exact-logit inputs for the bit test of the row pass; general
// inputs agree closely across thread counts and bit for bit from run to run at a fixed count.
TEST(LmHead, DeterministicAcrossThreadCounts) {
  Problem exact = make_problem(64, 32, 1000, 0.7f, 9), p = make_problem(64, 32, 1000, 0.7f, 10);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> q(-8, 8);
  for (float &v : exact.x) v = q(rng) / 8.0f;
  for (float &v : exact.W) v = q(rng) / 16.0f;
  std::vector<float> dlp(p.N);
  for (int n = 0; n < p.N; ++n) dlp[n] = std::sin(0.3f * n);
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  Out e1 = forward(exact, 16), o1 = forward(p, 16);
  Grads g1 = backward(p, dlp, 16);
  omp_set_num_threads(2);
  Out e2 = forward(exact, 16), o2 = forward(p, 16), o2b = forward(p, 16);
  Grads g2 = backward(p, dlp, 16), g2b = backward(p, dlp, 16);
  omp_set_num_threads(saved);
  EXPECT_TRUE(same_bits(e1.lp, e2.lp));
  EXPECT_TRUE(same_bits(e1.ent, e2.ent));
  EXPECT_TRUE(same_bits(o2.lp, o2b.lp) && same_bits(o2.ent, o2b.ent)) << "run to run";
  EXPECT_TRUE(same_bits(g2.dx, g2b.dx) && same_bits(g2.dW, g2b.dW)) << "run to run";
  for (int n = 0; n < p.N; ++n) {
    EXPECT_NEAR(o1.lp[n], o2.lp[n], 1e-5f * (1.0f + std::fabs(o1.lp[n])));
    EXPECT_NEAR(o1.ent[n], o2.ent[n], 1e-5f * (1.0f + std::fabs(o1.ent[n])));
  }
  for (size_t i = 0; i < g1.dx.size(); ++i) EXPECT_NEAR(g1.dx[i], g2.dx[i], 1e-5f);
  for (size_t i = 0; i < g1.dW.size(); ++i) EXPECT_NEAR(g1.dW[i], g2.dW[i], 1e-5f);
}

TEST(LmHead, RejectsBadArguments) {
  drl_device dev;
  ASSERT_EQ(drl_device_open(&dev, DRL_BACKEND_CPU, 0), DRL_OK);
  Problem p = make_problem(4, 3, 5, 1.0f, 1);
  std::vector<float> lp(4, -3.0f), scratch(4 * 5), dx(12), dW(15), dlp(4, 1.0f);
  p.targets[2] = 5;  // == V
  EXPECT_EQ(drl_lm_head_forward(&dev, lp.data(), nullptr, p.x.data(), p.W.data(), p.targets.data(), 4, 3, 5, 1.0f,
                                scratch.data(), 4),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("targets[2] = 5");
  for (float v : lp) EXPECT_EQ(v, -3.0f) << "outputs untouched on error";
  EXPECT_EQ(drl_lm_head_backward(&dev, dx.data(), dW.data(), dlp.data(), p.x.data(), p.W.data(), p.targets.data(), 4,
                                 3, 5, 1.0f, scratch.data(), 4),
            DRL_ERR_INVALID_ARG);
  p.targets[2] = 1;
  EXPECT_EQ(drl_lm_head_forward(&dev, lp.data(), nullptr, p.x.data(), p.W.data(), p.targets.data(), 4, 3, 5, 0.0f,
                                scratch.data(), 4),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("temperature");
  EXPECT_EQ(drl_lm_head_forward(&dev, lp.data(), nullptr, p.x.data(), p.W.data(), p.targets.data(), 4, 3, 5, 1.0f,
                                scratch.data(), 0),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("chunk_rows");
  EXPECT_EQ(drl_lm_head_scratch_floats(&dev, 7, 32000), 7 * 32000);
}
