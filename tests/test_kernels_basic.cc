// Elementwise, SwiGLU, RMSNorm and embedding on the CPU: forwards against naive double-precision references,
// backwards against central finite differences of those references (loss = a random linear functional of the
// output), += semantics, thread-count independence of the deterministic sums, and argument errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "test_util.h"

extern "C" {
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/rmsnorm.h"
#include "kernels/swiglu.h"
}

namespace {

std::vector<double> to_d(const std::vector<float> &v) { return std::vector<double>(v.begin(), v.end()); }

// Central differences of L(x) = sum_i r_i f(x)_i with respect to every x_j, in double precision.
std::vector<double> fd_grad(std::vector<double> x, const std::vector<double> &r,
                            const std::function<std::vector<double>(const std::vector<double> &)> &f) {
  const double h = 1e-5;
  std::vector<double> g(x.size());
  for (size_t j = 0; j < x.size(); ++j) {
    double keep = x[j];
    x[j] = keep + h;
    std::vector<double> up = f(x);
    x[j] = keep - h;
    std::vector<double> dn = f(x);
    x[j] = keep;
    double s = 0.0;
    for (size_t i = 0; i < r.size(); ++i) s += r[i] * (up[i] - dn[i]);
    g[j] = s / (2 * h);
  }
  return g;
}


bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// ---- double-precision references ----

std::vector<double> ref_swiglu(const std::vector<double> &gate, const std::vector<double> &up) {
  std::vector<double> out(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) out[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
  return out;
}

std::vector<double> ref_rmsnorm(const std::vector<double> &x, const std::vector<double> &w, int N, int C, double eps,
                                std::vector<double> *rstd = nullptr) {
  std::vector<double> out((size_t)N * C);
  if (rstd) rstd->assign(N, 0.0);
  for (int n = 0; n < N; ++n) {
    double ss = 0.0;
    for (int c = 0; c < C; ++c) ss += x[(size_t)n * C + c] * x[(size_t)n * C + c];
    double r = 1.0 / std::sqrt(ss / C + eps);
    if (rstd) (*rstd)[n] = r;
    for (int c = 0; c < C; ++c) out[(size_t)n * C + c] = x[(size_t)n * C + c] * r * w[c];
  }
  return out;
}

std::vector<double> ref_embedding(const std::vector<int32_t> &tok, const std::vector<double> &table, int C) {
  std::vector<double> out(tok.size() * C);
  for (size_t n = 0; n < tok.size(); ++n)
    for (int c = 0; c < C; ++c) out[n * C + c] = table[(size_t)tok[n] * C + c];
  return out;
}

std::vector<int32_t> rand_tokens(int N, int V, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int> u(0, V - 1);
  std::vector<int32_t> t(N);
  for (auto &x : t) x = u(g);
  return t;
}

// The embedding backward's order as embedding.h defines it, written from the definition: occurrence i of token t
// has sorted index (occurrences of tokens < t) + i and chunk index / DRL_EMBEDDING_CHUNK; the gradient is dtable +
// the elements of the first chunk one by one, then each later chunk's partial sum (from its first element).
std::vector<float> ref_embedding_backward_order(std::vector<float> dt, const std::vector<float> &dout,
                                                const std::vector<int32_t> &tok, int C, int V) {
  std::vector<std::vector<int>> occ(V);
  for (size_t n = 0; n < tok.size(); ++n) occ[tok[n]].push_back((int)n);
  int64_t before = 0;
  for (int t = 0; t < V; ++t) {
    for (int c = 0; c < C; ++c) {
      float acc = dt[(size_t)t * C + c], part = 0.0f;
      int64_t part_chunk = -1;
      for (size_t i = 0; i < occ[t].size(); ++i) {
        int64_t chunk = (before + (int64_t)i) / DRL_EMBEDDING_CHUNK;
        float g = dout[(size_t)occ[t][i] * C + c];
        if (chunk == before / DRL_EMBEDDING_CHUNK) {
          acc += g;
        } else if (chunk != part_chunk) {
          if (part_chunk >= 0) acc += part;
          part = g;
          part_chunk = chunk;
        } else {
          part += g;
        }
      }
      if (part_chunk >= 0) acc += part;
      dt[(size_t)t * C + c] = acc;
    }
    before += (int64_t)occ[t].size();
  }
  return dt;
}

// drl_embedding_backward on the CPU with a scratch of exactly drl_embedding_scratch_bytes, followed by guard bytes
// that must stay untouched.
drl_status embedding_backward_exact_scratch(std::vector<float> &dt, const std::vector<float> &dout,
                                            const std::vector<int32_t> &tok, int C, int V) {
  drl_device dev = cpu_device();
  int N = (int)tok.size();
  int64_t b = drl_embedding_scratch_bytes(&dev, N, C);
  EXPECT_GE(b, 0);
  size_t bytes = b > 0 ? (size_t)b : 0;
  std::vector<unsigned char> scratch(bytes + 256, 0xA5);
  std::memset(scratch.data(), 0xFF, bytes);  // NaN: the op may not rely on zeros
  drl_status st = drl_embedding_backward(&dev, dt.data(), dout.data(), tok.data(), N, C, V,
                                         bytes ? scratch.data() : nullptr);
  for (size_t k = bytes; k < scratch.size(); ++k)
    if (scratch[k] != 0xA5) {
      ADD_FAILURE() << "scratch byte " << k - bytes << " past its end was written";
      break;
    }
  return st;
}

}  // namespace

// ---------------- elementwise ----------------

TEST(Elementwise, AddAxpyScaleMatchReference) {
  drl_device dev = cpu_device();
  const int64_t n = 100003;  // past the OpenMP threshold, odd
  auto a = random_uniform(n, 1), b = random_uniform(n, 2);
  std::vector<float> out(n);
  ASSERT_EQ(drl_add(&dev, out.data(), a.data(), b.data(), n), DRL_OK) << last_error();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out[i], (float)((double)a[i] + (double)b[i])) << i;

  auto y = a;
  const float alpha = -0.37f;
  ASSERT_EQ(drl_axpy(&dev, y.data(), alpha, b.data(), n), DRL_OK) << last_error();
  for (int64_t i = 0; i < n; ++i) {
    // one rounding for the product, one for the sum: what the header promises on both backends
    float want = (float)((double)a[i] + (double)(float)((double)alpha * (double)b[i]));
    ASSERT_EQ(y[i], want) << i;
  }

  auto x = a;
  ASSERT_EQ(drl_scale(&dev, x.data(), 3.5f, n), DRL_OK) << last_error();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(x[i], (float)((double)a[i] * 3.5)) << i;
}

TEST(Elementwise, AddMayAliasItsInputs) {
  drl_device dev = cpu_device();
  auto a = random_uniform(1000, 3), b = random_uniform(1000, 4);
  auto res = a;
  ASSERT_EQ(drl_add(&dev, res.data(), res.data(), b.data(), 1000), DRL_OK);  // the residual add: x += f(x)
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(res[i], a[i] + b[i]) << i;
  auto twice = a;
  ASSERT_EQ(drl_add(&dev, twice.data(), twice.data(), twice.data(), 1000), DRL_OK);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(twice[i], 2.0f * a[i]) << i;
}

TEST(Elementwise, RejectsNegativeLengthAndNullBuffers) {
  drl_device dev = cpu_device();
  float v[4] = {1, 2, 3, 4};
  EXPECT_EQ(drl_add(&dev, v, v, v, -1), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative length -1");
  EXPECT_EQ(drl_axpy(&dev, v, 1.0f, nullptr, 4), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("drl_axpy: NULL buffer");
  EXPECT_EQ(drl_scale(&dev, nullptr, 2.0f, 4), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("drl_scale: NULL buffer");
  EXPECT_EQ(drl_scale(&dev, nullptr, 2.0f, 0), DRL_OK) << "nothing to touch";
  EXPECT_EQ(v[0], 1.0f);
}

// ---------------- SwiGLU ----------------

TEST(SwiGLU, ForwardMatchesReference) {
  drl_device dev = cpu_device();
  const int n = 50000;
  auto gate = random_uniform(n, 5, -12.0f, 12.0f), up = random_uniform(n, 6, -3.0f, 3.0f);
  gate[0] = -200.0f;  // expf overflows to inf: silu must be 0, not NaN
  gate[1] = 200.0f;
  std::vector<float> out(n);
  ASSERT_EQ(drl_swiglu_forward(&dev, out.data(), gate.data(), up.data(), n), DRL_OK) << last_error();
  auto ref = ref_swiglu(to_d(gate), to_d(up));
  for (int i = 0; i < n; ++i) ASSERT_NEAR(out[i], ref[i], 1e-6 * (1.0 + std::fabs(ref[i]))) << i;
  EXPECT_EQ(out[0], 0.0f);
}

TEST(SwiGLU, BackwardMatchesFiniteDifferences) {
  drl_device dev = cpu_device();
  const int n = 35;
  auto gate = random_uniform(n, 7, -4.0f, 4.0f), up = random_uniform(n, 8), r = random_uniform(n, 9);
  std::vector<float> dgate(n, 99.0f), dup(n, 99.0f);  // overwritten, not accumulated
  ASSERT_EQ(drl_swiglu_backward(&dev, dgate.data(), dup.data(), r.data(), gate.data(), up.data(), n), DRL_OK)
      << last_error();
  auto gd = to_d(gate), ud = to_d(up), rd = to_d(r);
  expect_grad_close(dgate, fd_grad(gd, rd, [&](const std::vector<double> &g) { return ref_swiglu(g, ud); }), "dgate");
  expect_grad_close(dup, fd_grad(ud, rd, [&](const std::vector<double> &u) { return ref_swiglu(gd, u); }), "dup");
  // In place over the activations (the header allows it): the same bits.
  auto g2 = gate, u2 = up;
  ASSERT_EQ(drl_swiglu_backward(&dev, g2.data(), u2.data(), r.data(), g2.data(), u2.data(), n), DRL_OK);
  EXPECT_TRUE(same_bits(g2, dgate) && same_bits(u2, dup)) << "in-place backward differs";
}

TEST(SwiGLU, RejectsBadArguments) {
  drl_device dev = cpu_device();
  float v[2] = {0, 0};
  EXPECT_EQ(drl_swiglu_forward(&dev, v, v, v, -5), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative length -5");
  EXPECT_EQ(drl_swiglu_backward(&dev, v, nullptr, v, v, v, 2), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("drl_swiglu_backward: NULL buffer");
}

// ---------------- RMSNorm ----------------

TEST(RMSNorm, ForwardMatchesReference) {
  drl_device dev = cpu_device();
  for (auto [N, C] : {std::pair{5, 7}, std::pair{37, 100}, std::pair{64, 768}}) {
    auto x = random_uniform((size_t)N * C, 10 + C, -2.0f, 2.0f), w = random_uniform(C, 11 + C, 0.5f, 1.5f);
    std::vector<float> out((size_t)N * C), rstd(N);
    const float eps = 1e-5f;
    ASSERT_EQ(drl_rmsnorm_forward(&dev, out.data(), rstd.data(), x.data(), w.data(), N, C, eps), DRL_OK)
        << last_error();
    std::vector<double> rref;
    auto ref = ref_rmsnorm(to_d(x), to_d(w), N, C, eps, &rref);
    for (int n = 0; n < N; ++n) ASSERT_NEAR(rstd[n], rref[n], 1e-5 * rref[n]) << "row " << n << " C " << C;
    for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-5 * (1.0 + std::fabs(ref[i]))) << i;
  }
}

TEST(RMSNorm, BackwardMatchesFiniteDifferencesAndAccumulates) {
  drl_device dev = cpu_device();
  for (auto [N, C] : {std::pair{5, 7}, std::pair{40, 45}}) {  // 40 rows: two dweight chunks; 45: two lane rounds
    const double eps = 1e-5;
    auto x = random_uniform((size_t)N * C, 20, -2.0f, 2.0f), w = random_uniform(C, 21, 0.5f, 1.5f),
         r = random_uniform((size_t)N * C, 22);
    std::vector<float> out((size_t)N * C), rstd(N);
    ASSERT_EQ(drl_rmsnorm_forward(&dev, out.data(), rstd.data(), x.data(), w.data(), N, C, (float)eps), DRL_OK);
    // Nonzero starting gradients: the backward must add to them.
    auto dinp0 = random_uniform((size_t)N * C, 23), dw0 = random_uniform(C, 24);
    auto dinp = dinp0, dw = dw0;
    std::vector<float> scratch(drl_rmsnorm_scratch_floats(&dev, N, C));
    ASSERT_EQ(drl_rmsnorm_backward(&dev, dinp.data(), dw.data(), r.data(), x.data(), w.data(), rstd.data(), N, C,
                                   scratch.data()),
              DRL_OK)
        << last_error();
    std::vector<float> ginp((size_t)N * C), gw(C);
    for (size_t i = 0; i < ginp.size(); ++i) ginp[i] = dinp[i] - dinp0[i];
    for (int c = 0; c < C; ++c) gw[c] = dw[c] - dw0[c];
    auto xd = to_d(x), wd = to_d(w), rd = to_d(r);
    expect_grad_close(ginp, fd_grad(xd, rd, [&](const std::vector<double> &v) { return ref_rmsnorm(v, wd, N, C, eps); }),
                      "dinp");
    expect_grad_close(gw, fd_grad(wd, rd, [&](const std::vector<double> &v) { return ref_rmsnorm(xd, v, N, C, eps); }),
                      "dweight");
  }
}

TEST(RMSNorm, DweightAndDinpIdenticalForAnyThreadCount) {
  drl_device dev = cpu_device();
  const int N = 1000, C = 300;  // 32 chunks, the last one short
  auto x = random_uniform((size_t)N * C, 30, -2.0f, 2.0f), w = random_uniform(C, 31),
       dout = random_uniform((size_t)N * C, 32);
  std::vector<float> out((size_t)N * C), rstd(N), scratch(drl_rmsnorm_scratch_floats(&dev, N, C));
  ASSERT_EQ(drl_rmsnorm_forward(&dev, out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f), DRL_OK);
  std::vector<std::vector<float>> dws, dinps;
  for (int t : {1, 2, 3}) {
    std::vector<float> dinp((size_t)N * C, 0.25f), dw(C, 0.5f);
    with_threads(t, [&] {
      ASSERT_EQ(drl_rmsnorm_backward(&dev, dinp.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N,
                                     C, scratch.data()),
                DRL_OK);
    });
    dws.push_back(dw);
    dinps.push_back(dinp);
  }
  for (size_t i = 1; i < dws.size(); ++i) {
    EXPECT_TRUE(same_bits(dws[0], dws[i])) << "dweight differs between 1 and " << i + 1 << " threads";
    EXPECT_TRUE(same_bits(dinps[0], dinps[i])) << "dinp differs between 1 and " << i + 1 << " threads";
  }
}

// The CPU must run the documented order exactly (the GPU's two-stage tree): chunks of DRL_RMSNORM_CHUNK_ROWS rows,
// each summed in row order, combined in chunk order, added to dweight once.
TEST(RMSNorm, DweightFollowsTheFixedChunkOrder) {
  drl_device dev = cpu_device();
  const int N = 100, C = 3;
  auto x = random_uniform((size_t)N * C, 33), w = random_uniform(C, 34), dout = random_uniform((size_t)N * C, 35);
  std::vector<float> out((size_t)N * C), rstd(N), scratch(drl_rmsnorm_scratch_floats(&dev, N, C));
  ASSERT_EQ(scratch.size(), (size_t)((N + DRL_RMSNORM_CHUNK_ROWS - 1) / DRL_RMSNORM_CHUNK_ROWS) * C);
  ASSERT_EQ(drl_rmsnorm_forward(&dev, out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f), DRL_OK);
  std::vector<float> dinp((size_t)N * C), dw(C, 1.0f);
  ASSERT_EQ(drl_rmsnorm_backward(&dev, dinp.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C,
                                 scratch.data()),
            DRL_OK);
  for (int c = 0; c < C; ++c) {
    volatile float total = 0.0f;  // volatile: one rounding per step, as the header does
    for (int k0 = 0; k0 < N; k0 += DRL_RMSNORM_CHUNK_ROWS) {
      volatile float part = 0.0f;
      for (int n = k0; n < std::min(N, k0 + DRL_RMSNORM_CHUNK_ROWS); ++n) {
        volatile float p = dout[(size_t)n * C + c] * x[(size_t)n * C + c];
        volatile float q = p * rstd[n];
        part = part + q;
      }
      total = k0 == 0 ? (float)part : total + part;
    }
    EXPECT_EQ(dw[c], 1.0f + total) << "channel " << c;
  }
}

TEST(RMSNorm, RejectsBadArguments) {
  drl_device dev = cpu_device();
  float v[8] = {};
  EXPECT_EQ(drl_rmsnorm_forward(&dev, v, v + 4, v, v, -1, 2, 1e-5f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative size N=-1 C=2");
  EXPECT_EQ(drl_rmsnorm_forward(&dev, v, v + 4, v + 2, v, 1, -3, 1e-5f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative size N=1 C=-3");
  EXPECT_EQ(drl_rmsnorm_forward(&dev, v, v + 4, v, v, 1, 2, 1e-5f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("out may not alias inp");
  EXPECT_EQ(drl_rmsnorm_forward(&dev, v, v + 4, v + 2, v, 1, 2, -1.0f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("eps must be >= 0");
  EXPECT_EQ(drl_rmsnorm_forward(&dev, v, nullptr, v + 2, v, 1, 2, 1e-5f), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("NULL buffer");
  EXPECT_EQ(drl_rmsnorm_backward(&dev, v, v, v, v, v, v, 1, 2, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("drl_rmsnorm_scratch_floats");
  EXPECT_EQ(drl_rmsnorm_backward(&dev, v, v + 6, v, v + 2, v + 4, v + 5, 1, 2, v + 7), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("dinp may not alias dout");
  EXPECT_EQ(drl_rmsnorm_backward(&dev, v, v, v, v, v, v, 2, 0, v), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("C must be positive");
}

// ---------------- embedding ----------------

TEST(Embedding, ForwardCopiesRows) {
  drl_device dev = cpu_device();
  const int N = 300, C = 33, V = 17;
  auto tok = rand_tokens(N, V, 40);
  auto table = random_uniform((size_t)V * C, 41);
  std::vector<float> out((size_t)N * C);
  ASSERT_EQ(drl_embedding_forward(&dev, out.data(), tok.data(), table.data(), N, C, V), DRL_OK) << last_error();
  auto ref = ref_embedding(tok, to_d(table), C);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ((double)out[i], ref[i]) << i;
}

TEST(Embedding, ForwardRejectsBadTokenNamingItAndWritesNothing) {
  drl_device dev = cpu_device();
  const int N = 6, C = 4, V = 10;
  auto table = random_uniform(V * C, 42);
  for (int32_t bad : {10, -1, 1 << 30}) {
    std::vector<int32_t> tok = {1, 2, 3, bad, 4, 5};
    std::vector<float> out(N * C, 7.0f);
    drl_clear_error();
    EXPECT_EQ(drl_embedding_forward(&dev, out.data(), tok.data(), table.data(), N, C, V), DRL_ERR_INVALID_ARG);
    EXPECT_ERROR_HAS("token " + std::to_string(bad) + " at position 3 is outside the vocabulary [0, 10)");
    for (float v : out) ASSERT_EQ(v, 7.0f) << "nothing is written before the check";
  }
}

TEST(Embedding, BackwardMatchesFiniteDifferencesAndAccumulates) {
  const int N = 5, C = 7, V = 4;
  std::vector<int32_t> tok = {2, 0, 2, 3, 2};  // token 1 unused: its gradient stays as it was
  auto table = random_uniform(V * C, 43), r = random_uniform(N * C, 44);
  auto dt0 = random_uniform(V * C, 45);
  auto dt = dt0;
  ASSERT_EQ(embedding_backward_exact_scratch(dt, r, tok, C, V), DRL_OK) << last_error();
  std::vector<float> g(V * C);
  for (int i = 0; i < V * C; ++i) g[i] = dt[i] - dt0[i];
  auto fd = fd_grad(to_d(table), to_d(r), [&](const std::vector<double> &t) { return ref_embedding(tok, t, C); });
  expect_grad_close(g, fd, "dtable");
  for (int c = 0; c < C; ++c) EXPECT_EQ(dt[1 * C + c], dt0[1 * C + c]) << "unused token row touched";
}

struct EmbeddingOrderCase {
  const char *name;
  int N, C, V;
  int32_t pad;  // >= 0: nine positions in ten hold this token
  bool distinct; // every token once (a permutation of [0, N), V = N)
};

std::vector<int32_t> order_case_tokens(const EmbeddingOrderCase &k, unsigned seed) {
  std::vector<int32_t> tok = rand_tokens(k.N, k.V, seed);
  std::mt19937 g(seed + 1);
  if (k.distinct) {
    for (int n = 0; n < k.N; ++n) tok[n] = n;
    std::shuffle(tok.begin(), tok.end(), g);
  }
  if (k.pad >= 0)
    for (auto &t : tok)
      if (g() % 10 != 0) t = k.pad;
  if (k.V > 1 << 16)  // 300 ids spread over the vocabulary: runs repeat, and every byte of the sort key matters
    for (auto &t : tok) t = (t % 300) * 3491 % k.V;
  return tok;
}

const EmbeddingOrderCase kOrderCases[] = {
    {"a padding token over many chunks", 3000, 40, 50, 3, false},
    {"padding token 0, C = 1", 2000, 1, 9, 0, false},
    {"all tokens distinct", 1000, 24, 1000, -1, false},
    {"a permutation, N a multiple of the chunk", 4 * DRL_EMBEDDING_CHUNK, 16, 4 * DRL_EMBEDDING_CHUNK, -1, true},
    {"runs across chunk ends, N not a multiple of the chunk", 1000, 37, 7, -1, false},
    {"N below one chunk", DRL_EMBEDDING_CHUNK / 2 + 3, 21, 5, -1, false},
    {"one token", 700, 19, 1, -1, false},
    {"three radix passes", 3000, 17, 1 << 17, -1, false},
};

TEST(Embedding, BackwardFollowsTheDocumentedChunkOrderBitForBit) {
  unsigned seed = 46;
  for (const auto &k : kOrderCases) {
    SCOPED_TRACE(k.name);
    auto tok = order_case_tokens(k, seed++);
    auto dout = mixed_values((size_t)k.N * k.C, seed++);  // mixed magnitudes: any other order shows in the bits
    auto dt0 = mixed_values((size_t)k.V * k.C, seed++);
    auto want = ref_embedding_backward_order(dt0, dout, tok, k.C, k.V);
    for (int threads : {1, 2, 3}) {
      auto dt = dt0;
      with_threads(threads, [&] { ASSERT_EQ(embedding_backward_exact_scratch(dt, dout, tok, k.C, k.V), DRL_OK); });
      EXPECT_TRUE(same_bits(dt, want)) << "not the documented order with " << threads << " threads";
    }
  }
}

TEST(Embedding, BackwardIsCloseToTheDoubleSum) {
  unsigned seed = 60;
  for (const auto &k : kOrderCases) {
    SCOPED_TRACE(k.name);
    auto tok = order_case_tokens(k, seed++);
    auto dout = random_uniform((size_t)k.N * k.C, seed++, -10.0f, 10.0f);
    auto dt = random_uniform((size_t)k.V * k.C, seed++);
    std::vector<double> want(dt.begin(), dt.end()), mag(want.size());
    std::vector<int> count(k.V);
    for (size_t i = 0; i < want.size(); ++i) mag[i] = std::fabs(want[i]);
    for (int n = 0; n < k.N; ++n) {
      ++count[tok[n]];
      for (int c = 0; c < k.C; ++c) {
        double g = dout[(size_t)n * k.C + c];
        want[(size_t)tok[n] * k.C + c] += g;
        mag[(size_t)tok[n] * k.C + c] += std::fabs(g);
      }
    }
    ASSERT_EQ(embedding_backward_exact_scratch(dt, dout, tok, k.C, k.V), DRL_OK) << last_error();
    for (size_t i = 0; i < dt.size(); ++i)  // any order of n + 1 float adds: within n u of the terms' magnitudes
      ASSERT_LE(std::fabs(dt[i] - want[i]), (count[i / k.C] + 1) * 0x1p-24 * mag[i]) << i;
  }
}

TEST(Embedding, BackwardScratchIsTheDocumentedSizeOnTheCpu) {
  drl_device dev = cpu_device();
  auto round = [](int64_t b) { return (b + 255) / 256 * 256; };
  for (int N : {1, 5, DRL_EMBEDDING_CHUNK, DRL_EMBEDDING_CHUNK + 1, 4096, 100000})
    for (int C : {1, 13, 768}) {
      int64_t chunks = (N + DRL_EMBEDDING_CHUNK - 1) / DRL_EMBEDDING_CHUNK;
      EXPECT_EQ(drl_embedding_scratch_bytes(&dev, N, C), 4 * round(4 * (int64_t)N) + round(chunks * C * 4))
          << "N=" << N << " C=" << C;
    }
  EXPECT_EQ(drl_embedding_scratch_bytes(&dev, 0, 8), 0);
  EXPECT_EQ(drl_embedding_scratch_bytes(&dev, 8, 0), 0);
  // The op works inside exactly that many bytes (embedding_backward_exact_scratch checks the bytes after them).
  auto tok = rand_tokens(DRL_EMBEDDING_CHUNK * 3 + 1, 4, 70);
  auto dout = random_uniform(tok.size() * 5, 71);
  std::vector<float> dt(4 * 5, 0.0f);
  EXPECT_EQ(embedding_backward_exact_scratch(dt, dout, tok, 5, 4), DRL_OK) << last_error();
}

// The GPU's path, run here: it calls the two stages on its own sort, where a bad token is key V and sorts last. Over
// every (chunk, channel), stage 2 in reverse chunk order (the GPU runs blocks in any order), the result is the CPU's
// on the valid positions alone.
TEST(Embedding, SharedStagesSkipBadTokensSortedLastAsTheGpuDoes) {
  drl_device dev = cpu_device();
  const int N = 5 * DRL_EMBEDDING_CHUNK + 17, C = 9, V = 6;
  auto tok = rand_tokens(N, V, 80);
  for (int n = 3; n < N; n += 7) tok[n] = n % 2 ? V : -1;  // about one in seven bad
  auto dout = mixed_values((size_t)N * C, 81);
  auto dt0 = mixed_values((size_t)V * C, 82);
  std::vector<uint32_t> keys(N);
  std::vector<int32_t> pos(N);
  for (int n = 0; n < N; ++n) pos[n] = n;
  auto key = [&](int n) { return drl_embedding_token_ok(tok[n], V) ? (uint32_t)tok[n] : (uint32_t)V; };
  std::stable_sort(pos.begin(), pos.end(), [&](int32_t a, int32_t b) { return key(a) < key(b); });
  for (int s = 0; s < N; ++s) keys[s] = key(pos[s]);
  int chunks = (N + DRL_EMBEDDING_CHUNK - 1) / DRL_EMBEDDING_CHUNK;
  std::vector<float> carry((size_t)chunks * C, std::nanf("")), dt = dt0;
  for (int j = 0; j < chunks; ++j)
    for (int c = 0; c < C; ++c) drl_embedding_carry(carry.data(), keys.data(), pos.data(), dout.data(), N, C, V, j, c);
  for (int j = chunks - 1; j >= 0; --j)
    for (int c = 0; c < C; ++c)
      drl_embedding_chunk(dt.data(), carry.data(), keys.data(), pos.data(), dout.data(), N, C, V, j, c);
  std::vector<int32_t> good;
  std::vector<float> good_dout;
  for (int n = 0; n < N; ++n)
    if (drl_embedding_token_ok(tok[n], V)) {
      good.push_back(tok[n]);
      good_dout.insert(good_dout.end(), dout.begin() + (size_t)n * C, dout.begin() + (size_t)(n + 1) * C);
    }
  auto want = dt0;
  ASSERT_EQ(embedding_backward_exact_scratch(want, good_dout, good, C, V), DRL_OK) << last_error();
  EXPECT_TRUE(same_bits(dt, want)) << "the stages on the GPU's sort differ from the CPU on the valid positions";
  drl_device_close(&dev);
}

TEST(Embedding, BackwardRejectsBadTokenAndLeavesGradientUntouched) {
  drl_device dev = cpu_device();
  const int N = 4, C = 3, V = 5;
  std::vector<int32_t> tok = {0, 1, 5, 2};
  auto dout = random_uniform(N * C, 49);
  std::vector<float> dt(V * C, 1.0f);
  std::vector<char> scratch((size_t)drl_embedding_scratch_bytes(&dev, N, C));
  EXPECT_EQ(drl_embedding_backward(&dev, dt.data(), dout.data(), tok.data(), N, C, V, scratch.data()),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("token 5 at position 2 is outside the vocabulary [0, 5)");
  for (float v : dt) ASSERT_EQ(v, 1.0f);
}

TEST(Embedding, RejectsBadSizesAndNullBuffers) {
  drl_device dev = cpu_device();
  float v[4] = {};
  int32_t tok[2] = {0, 0};
  EXPECT_EQ(drl_embedding_forward(&dev, v, tok, v, -2, 2, 2), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative size N=-2 C=2 V=2");
  EXPECT_EQ(drl_embedding_backward(&dev, v, v, tok, 2, 2, -1, v), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative size N=2 C=2 V=-1");
  EXPECT_EQ(drl_embedding_forward(&dev, v, nullptr, v, 2, 2, 2), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("NULL tokens");
  EXPECT_EQ(drl_embedding_backward(&dev, nullptr, v, tok, 2, 2, 2, v), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("NULL buffer");
  EXPECT_EQ(drl_embedding_backward(&dev, v, v, tok, 2, 2, 2, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("NULL scratch (needs drl_embedding_scratch_bytes(dev, 2, 2) bytes)");
}
