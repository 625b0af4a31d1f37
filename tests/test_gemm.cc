// drl_gemm and the matmul layer on the CPU (OpenBLAS) against naive loops in double precision: every transpose
// combination with padded rows, alpha/beta, K = 0, batches; matmul backward against finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "test_util.h"

extern "C" {
#include "kernels/gemm.h"
}

namespace {

const float kPad = -12345.0f;  // lives in the padding of every row: a GEMM must never write there

// op(X)[i][k] of a row-major X with row stride ld.
float at(const std::vector<float> &X, int ld, int trans, int i, int k) {
  return trans ? X[(size_t)k * ld + i] : X[(size_t)i * ld + k];
}

// Checks C (M x N, stride ldc) = alpha op(A) op(B) + beta C0 within float rounding of the terms, and that the
// padding of C is untouched.
void expect_gemm(const std::vector<float> &C, const std::vector<float> &C0, const std::vector<float> &A,
                 const std::vector<float> &B, int ta, int tb, int M, int N, int K, float alpha, float beta, int lda,
                 int ldb, int ldc, const char *what) {
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      double s = 0.0, mag = 0.0;
      for (int k = 0; k < K; ++k) {
        double p = (double)at(A, lda, ta, i, k) * (double)at(B, ldb, tb, k, j);
        s += p;
        mag += std::fabs(p);
      }
      double c0 = C0[(size_t)i * ldc + j];
      double want = alpha * s + (beta == 0.0f ? 0.0 : beta * c0);
      double tol = 1e-5 * (std::fabs(alpha) * mag + std::fabs(beta * c0)) + 1e-30;
      ASSERT_NEAR(C[(size_t)i * ldc + j], want, tol) << what << " at (" << i << ", " << j << ")";
    }
    for (int j = N; j < ldc; ++j) ASSERT_EQ(C[(size_t)i * ldc + j], kPad) << what << ": padding written";
  }
}

std::vector<float> padded(int rows, int cols, int ld, unsigned seed) {
  auto v = random_uniform((size_t)rows * ld, seed);
  for (int r = 0; r < rows; ++r)
    for (int c = cols; c < ld; ++c) v[(size_t)r * ld + c] = kPad;
  return v;
}

std::vector<double> ref_matmul(const std::vector<double> &inp, const std::vector<double> &w, int rows, int in,
                               int out) {
  std::vector<double> y((size_t)rows * out, 0.0);
  for (int r = 0; r < rows; ++r)
    for (int o = 0; o < out; ++o)
      for (int i = 0; i < in; ++i) y[(size_t)r * out + o] += inp[(size_t)r * in + i] * w[(size_t)o * in + i];
  return y;
}

}  // namespace

TEST(Gemm, AllTransposesWithPaddedRowsAlphaBeta) {
  drl_device dev = cpu_device();
  const int M = 13, N = 11, K = 7;
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      int a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
      int lda = a_cols + 3, ldb = b_cols + 5, ldc = N + 2;
      auto A = padded(a_rows, a_cols, lda, 1 + ta), B = padded(b_rows, b_cols, ldb, 3 + tb);
      auto C0 = padded(M, N, ldc, 5);
      for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{1.5f, -0.5f}, std::pair{-0.25f, 1.0f}}) {
        auto C = C0;
        ASSERT_EQ(drl_gemm(&dev, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc), DRL_OK)
            << last_error();
        std::string what = "ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " alpha=" +
                           std::to_string(alpha) + " beta=" + std::to_string(beta);
        expect_gemm(C, C0, A, B, ta, tb, M, N, K, alpha, beta, lda, ldb, ldc, what.c_str());
      }
    }
  }
}

TEST(Gemm, BetaZeroOverwritesNaN) {
  drl_device dev = cpu_device();
  const int M = 4, N = 5, K = 3;
  auto A = random_uniform(M * K, 7), B = random_uniform(K * N, 8);
  std::vector<float> C(M * N, NAN), C0(M * N, 0.0f);
  ASSERT_EQ(drl_gemm(&dev, 0, 0, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N), DRL_OK);
  expect_gemm(C, C0, A, B, 0, 0, M, N, K, 1.0f, 0.0f, K, N, N, "beta=0 over NaN");
}

TEST(Gemm, KZeroIsAZeroProduct) {
  drl_device dev = cpu_device();
  const int M = 3, N = 4;
  float a = 1.0f, b = 1.0f;
  std::vector<float> C = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  ASSERT_EQ(drl_gemm(&dev, 0, 0, M, N, 0, 2.0f, &a, 1, &b, N, 0.5f, C.data(), N), DRL_OK) << last_error();
  for (int i = 0; i < M * N; ++i) EXPECT_EQ(C[i], 0.5f * (float)(i + 1)) << i;
  std::vector<float> nan(M * N, NAN);
  ASSERT_EQ(drl_gemm(&dev, 1, 1, M, N, 0, 2.0f, &a, M, &b, 1, 0.0f, nan.data(), N), DRL_OK) << last_error();
  for (float v : nan) EXPECT_EQ(v, 0.0f);
}

TEST(Gemm, StridedBatched) {
  drl_device dev = cpu_device();
  const int M = 6, N = 5, K = 4, batch = 3;
  const int64_t sa = M * K + 7, sb = N * K + 3, sc = M * N + 11;  // gaps between matrices stay untouched
  for (int tb = 0; tb < 2; ++tb) {
    int ldb = tb ? K : N;
    auto A = random_uniform((size_t)sa * batch, 9), B = random_uniform((size_t)sb * batch, 10),
         C0 = random_uniform((size_t)sc * batch, 11);
    auto C = C0;
    ASSERT_EQ(drl_gemm_strided_batched(&dev, 0, tb, M, N, K, 0.75f, A.data(), K, sa, B.data(), ldb, sb, 0.5f,
                                       C.data(), N, sc, batch),
              DRL_OK)
        << last_error();
    for (int i = 0; i < batch; ++i) {
      std::vector<float> a(A.begin() + i * sa, A.begin() + i * sa + M * K);
      std::vector<float> b(B.begin() + i * sb, B.begin() + i * sb + N * K);
      std::vector<float> c(C.begin() + i * sc, C.begin() + i * sc + M * N);
      std::vector<float> c0(C0.begin() + i * sc, C0.begin() + i * sc + M * N);
      expect_gemm(c, c0, a, b, 0, tb, M, N, K, 0.75f, 0.5f, K, ldb, N, ("batch " + std::to_string(i)).c_str());
      for (int64_t g = M * N; g < sc; ++g) ASSERT_EQ(C[i * sc + g], C0[i * sc + g]) << "gap written, batch " << i;
    }
  }
}

TEST(Matmul, ForwardMatchesNaiveAndAccumulates) {
  drl_device dev = cpu_device();
  const int rows = 9, in = 6, out = 4;
  auto x = random_uniform(rows * in, 12), w = random_uniform(out * in, 13), start = random_uniform(rows * out, 14);
  auto y = start;
  ASSERT_EQ(drl_matmul_forward(&dev, y.data(), x.data(), w.data(), rows, in, out, 0), DRL_OK) << last_error();
  auto ref = ref_matmul(std::vector<double>(x.begin(), x.end()), std::vector<double>(w.begin(), w.end()), rows, in,
                        out);
  for (int i = 0; i < rows * out; ++i) ASSERT_NEAR(y[i], ref[i], 1e-5) << i;
  y = start;
  ASSERT_EQ(drl_matmul_forward(&dev, y.data(), x.data(), w.data(), rows, in, out, 1), DRL_OK) << last_error();
  for (int i = 0; i < rows * out; ++i) ASSERT_NEAR(y[i], start[i] + ref[i], 1e-5) << "accumulate, " << i;
}

TEST(Matmul, BackwardMatchesFiniteDifferencesAndAccumulates) {
  drl_device dev = cpu_device();
  const int rows = 5, in = 7, out = 3;
  auto x = random_uniform(rows * in, 15), w = random_uniform(out * in, 16), r = random_uniform(rows * out, 17);
  auto dx0 = random_uniform(rows * in, 18), dw0 = random_uniform(out * in, 19);
  auto dx = dx0, dw = dw0;
  ASSERT_EQ(drl_matmul_backward(&dev, dx.data(), dw.data(), r.data(), x.data(), w.data(), rows, in, out), DRL_OK)
      << last_error();
  std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end());
  const double h = 1e-5;
  auto loss = [&](const std::vector<double> &xx, const std::vector<double> &ww) {
    auto y = ref_matmul(xx, ww, rows, in, out);
    double s = 0.0;
    for (size_t i = 0; i < y.size(); ++i) s += r[i] * y[i];
    return s;
  };
  for (size_t j = 0; j < xd.size(); ++j) {
    auto p = xd, m = xd;
    p[j] += h;
    m[j] -= h;
    double fd = (loss(p, wd) - loss(m, wd)) / (2 * h);
    EXPECT_NEAR(dx[j] - dx0[j], fd, 1e-3 * std::max(1.0, std::fabs(fd))) << "dinp " << j;
  }
  for (size_t j = 0; j < wd.size(); ++j) {
    auto p = wd, m = wd;
    p[j] += h;
    m[j] -= h;
    double fd = (loss(xd, p) - loss(xd, m)) / (2 * h);
    EXPECT_NEAR(dw[j] - dw0[j], fd, 1e-3 * std::max(1.0, std::fabs(fd))) << "dweight " << j;
  }
  // NULL skips that gradient and leaves nothing else changed.
  auto dx2 = dx0, dw2 = dw0;
  ASSERT_EQ(drl_matmul_backward(&dev, nullptr, dw2.data(), r.data(), x.data(), w.data(), rows, in, out), DRL_OK);
  for (size_t j = 0; j < dw2.size(); ++j) EXPECT_EQ(dw2[j], dw[j]) << "dweight alone, " << j;
  ASSERT_EQ(drl_matmul_backward(&dev, dx2.data(), nullptr, r.data(), x.data(), w.data(), rows, in, out), DRL_OK);
  for (size_t j = 0; j < dx2.size(); ++j) EXPECT_EQ(dx2[j], dx[j]) << "dinp alone, " << j;
}

TEST(Gemm, RejectsBadLeadingDimensionsAndSizes) {
  drl_device dev = cpu_device();
  std::vector<float> buf(64, 0.0f);
  float *p = buf.data();
  EXPECT_EQ(drl_gemm(&dev, 0, 0, 4, 4, 4, 1.0f, p, 3, p, 4, 0.0f, p, 4), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("leading dimensions lda=3 ldb=4 ldc=4 too small for M=4 N=4 K=4");
  EXPECT_EQ(drl_gemm(&dev, 1, 0, 5, 4, 2, 1.0f, p, 4, p, 4, 0.0f, p, 4), DRL_ERR_INVALID_ARG)
      << "A^T is K x M: lda must be >= M";
  EXPECT_ERROR_HAS("lda=4");
  EXPECT_EQ(drl_gemm(&dev, 0, 1, 2, 2, 6, 1.0f, p, 6, p, 5, 0.0f, p, 2), DRL_ERR_INVALID_ARG)
      << "B^T is N x K: ldb must be >= K";
  EXPECT_ERROR_HAS("ldb=5");
  EXPECT_EQ(drl_gemm(&dev, 0, 0, 2, 3, 2, 1.0f, p, 2, p, 3, 0.0f, p, 2), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("ldc=2");
  EXPECT_EQ(drl_gemm(&dev, 0, 0, -1, 3, 2, 1.0f, p, 2, p, 3, 0.0f, p, 3), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative size M=-1");
  EXPECT_EQ(drl_matmul_forward(&dev, p, p, p, 2, 3, -4, 0), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("negative size");
}
