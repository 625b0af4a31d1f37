// The CUDA twins of elementwise, SwiGLU, RMSNorm, embedding and GEMM against the CPU on realistic sizes.
// Bit-identical by construction: elementwise (each element rounded once, no FMA), RMSNorm forward and backward
// (same 32-lane row order, same fixed dweight chunks), embedding forward and backward (sorted runs summed in
// increasing n). Within a stated tolerance: SwiGLU (CUDA's expf is not glibc's), GEMM (cuBLAS vs OpenBLAS order).
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu_skip.h"
#include "../test_util.h"

extern "C" {
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/rmsnorm.h"
#include "kernels/swiglu.h"
}

namespace {

// |gpu - cpu| <= abs_tol + rel_tol |cpu| everywhere; reports the worst element.
void expect_close(const std::vector<float> &gpu, const std::vector<float> &cpu, double abs_tol, double rel_tol,
                  const char *what) {
  ASSERT_EQ(gpu.size(), cpu.size());
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    double excess = std::fabs((double)gpu[i] - cpu[i]) - (abs_tol + rel_tol * std::fabs(cpu[i]));
    if (!(excess <= worst)) {
      worst = std::isnan(excess) ? INFINITY : excess;
      at = i;
    }
  }
  EXPECT_LE(worst, 0.0) << what << ": element " << at << " gpu " << gpu[at] << " cpu " << cpu[at];
}

}  // namespace

TEST(GpuBasic, ElementwiseBitIdentical) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  const int64_t n = 4096LL * 768 + 5;
  auto a = random_uniform(n, 1), b = random_uniform(n, 2);
  DevBuf da(&gpu, a), db(&gpu, b), dout(&gpu, n * sizeof(float));

  std::vector<float> out(n);
  ASSERT_EQ(drl_add(&gpu, dout.f(), da.f(), db.f(), n), DRL_OK) << drl_last_error();
  drl_add_cpu(out.data(), a.data(), b.data(), n);
  EXPECT_SAME_BITS(dout.get(), out, "add");

  const float alpha = -0.3711f;
  ASSERT_EQ(drl_axpy(&gpu, da.f(), alpha, db.f(), n), DRL_OK) << drl_last_error();
  auto y = a;
  drl_axpy_cpu(y.data(), alpha, b.data(), n);
  EXPECT_SAME_BITS(da.get(), y, "axpy");

  ASSERT_EQ(drl_scale(&gpu, da.f(), 1.0f / 3.0f, n), DRL_OK) << drl_last_error();
  drl_scale_cpu(y.data(), 1.0f / 3.0f, n);
  EXPECT_SAME_BITS(da.get(), y, "scale");

  ASSERT_EQ(drl_add(&gpu, da.f(), da.f(), db.f(), n), DRL_OK) << "aliased residual add: " << drl_last_error();
  drl_add_cpu(y.data(), y.data(), b.data(), n);
  EXPECT_SAME_BITS(da.get(), y, "aliased add");
  drl_device_close(&gpu);
}

TEST(GpuBasic, SwigluWithinTolerance) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  const int64_t n = 4096LL * 2048;
  auto gate = random_uniform(n, 3, -8.0f, 8.0f), up = random_uniform(n, 4), dout = random_uniform(n, 5);
  gate[0] = -200.0f;  // expf(-g) overflows: must give 0, not NaN
  gate[1] = 200.0f;
  DevBuf dg(&gpu, gate), du(&gpu, up), dd(&gpu, dout), dres(&gpu, n * 4), dgg(&gpu, n * 4), dgu(&gpu, n * 4);
  std::vector<float> out(n), ggate(n), gup(n);

  ASSERT_EQ(drl_swiglu_forward(&gpu, dres.f(), dg.f(), du.f(), n), DRL_OK) << drl_last_error();
  drl_swiglu_forward_cpu(out.data(), gate.data(), up.data(), n);
  // CUDA's expf is within 2 ulp, glibc's within 1; a few ulp after the products.
  expect_close(dres.get(), out, 1e-6, 1e-5, "swiglu forward");

  ASSERT_EQ(drl_swiglu_backward(&gpu, dgg.f(), dgu.f(), dd.f(), dg.f(), du.f(), n), DRL_OK) << drl_last_error();
  drl_swiglu_backward_cpu(ggate.data(), gup.data(), dout.data(), gate.data(), up.data(), n);
  // dgate cancels to zero near g = -1.28 (nvcc also fuses 1 + g(1-s) there): an absolute floor of a few ulp of 1.
  expect_close(dgg.get(), ggate, 2e-6, 1e-5, "swiglu dgate");
  expect_close(dgu.get(), gup, 1e-6, 1e-5, "swiglu dup");
  drl_device_close(&gpu);
}

TEST(GpuBasic, RmsnormBitIdentical) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  for (auto [N, C] : {std::pair{4096, 768}, std::pair{1001, 100}, std::pair{3, 31}}) {
    SCOPED_TRACE("N=" + std::to_string(N) + " C=" + std::to_string(C));
    auto x = random_uniform((size_t)N * C, 6, -3.0f, 3.0f), w = random_uniform(C, 7, 0.5f, 1.5f),
         dout = random_uniform((size_t)N * C, 8);
    auto dinp0 = random_uniform((size_t)N * C, 9), dw0 = random_uniform(C, 10);
    const float eps = 1e-5f;
    DevBuf dx(&gpu, x), dwt(&gpu, w), ddo(&gpu, dout), dout_(&gpu, (size_t)N * C * 4), drs(&gpu, (size_t)N * 4),
        ddi(&gpu, dinp0), ddw(&gpu, dw0), dscr(&gpu, drl_rmsnorm_scratch_floats(&gpu, N, C) * 4);

    std::vector<float> out((size_t)N * C), rstd(N), scratch(drl_rmsnorm_scratch_floats(&gpu, N, C));
    ASSERT_EQ(drl_rmsnorm_forward(&gpu, dout_.f(), drs.f(), dx.f(), dwt.f(), N, C, eps), DRL_OK) << drl_last_error();
    drl_rmsnorm_forward_cpu(out.data(), rstd.data(), x.data(), w.data(), N, C, eps);
    EXPECT_SAME_BITS(drs.get(), rstd, "rstd");
    EXPECT_SAME_BITS(dout_.get(), out, "out");

    // The backward from the CPU's rstd on both sides, so it is judged on its own.
    auto dinp = dinp0, dw = dw0;
    ASSERT_EQ(drl_copy_to_device(&gpu, drs.p, rstd.data(), N * 4), DRL_OK);
    ASSERT_EQ(drl_rmsnorm_backward(&gpu, ddi.f(), ddw.f(), ddo.f(), dx.f(), dwt.f(), drs.f(), N, C, dscr.f()), DRL_OK)
        << drl_last_error();
    drl_rmsnorm_backward_cpu(dinp.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C,
                             scratch.data());
    EXPECT_SAME_BITS(ddi.get(), dinp, "dinp");
    EXPECT_SAME_BITS(ddw.get(), dw, "dweight");
  }
  drl_device_close(&gpu);
}

TEST(GpuBasic, EmbeddingBitIdentical) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  const int N = 4096, C = 768;
  for (int V : {32, 50257}) {  // long runs per token; mostly single occurrences
    SCOPED_TRACE("V=" + std::to_string(V));
    std::mt19937 g(11 + V);
    std::vector<int32_t> tok(N);
    for (auto &t : tok) t = (int32_t)(g() % (uint32_t)V);
    for (int n = 0; n < 300; ++n) tok[n] = 7;  // one very long run at the start
    auto table = random_uniform((size_t)V * C, 12), dout = random_uniform((size_t)N * C, 13, -10.0f, 10.0f);
    auto dt0 = random_uniform((size_t)V * C, 14);
    DevBuf dtok(&gpu, tok), dtab(&gpu, table), ddo(&gpu, dout), dres(&gpu, (size_t)N * C * 4), ddt(&gpu, dt0);
    int64_t sbytes = drl_embedding_scratch_bytes(&gpu, N);
    ASSERT_GT(sbytes, 0);
    DevBuf dscr(&gpu, (size_t)sbytes);
    drl_device cpu = cpu_device();

    std::vector<float> out((size_t)N * C);
    ASSERT_EQ(drl_embedding_forward(&gpu, dres.f(), dtok.i(), dtab.f(), N, C, V), DRL_OK) << drl_last_error();
    ASSERT_EQ(drl_embedding_forward(&cpu, out.data(), tok.data(), table.data(), N, C, V), DRL_OK);
    EXPECT_SAME_BITS(dres.get(), out, "forward");

    auto dt = dt0;
    ASSERT_EQ(drl_embedding_backward(&gpu, ddt.f(), ddo.f(), dtok.i(), N, C, V, dscr.p), DRL_OK) << drl_last_error();
    ASSERT_EQ(drl_embedding_backward(&cpu, dt.data(), dout.data(), tok.data(), N, C, V, nullptr), DRL_OK);
    EXPECT_SAME_BITS(ddt.get(), dt, "backward");
    // Twice more: still the CPU's bits, so nothing depends on scheduling.
    ASSERT_EQ(drl_embedding_backward(&gpu, ddt.f(), ddo.f(), dtok.i(), N, C, V, dscr.p), DRL_OK);
    ASSERT_EQ(drl_embedding_backward(&cpu, dt.data(), dout.data(), tok.data(), N, C, V, nullptr), DRL_OK);
    EXPECT_SAME_BITS(ddt.get(), dt, "second backward");
  }
  drl_device_close(&gpu);
}

// The GPU cannot report a bad token without a sync: the forward writes NaN for it, the backward skips it.
TEST(GpuBasic, EmbeddingBadTokenIsNaNForwardAndSkippedBackward) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  const int N = 64, C = 40, V = 16;
  std::mt19937 g(15);
  std::vector<int32_t> tok(N);
  for (auto &t : tok) t = (int32_t)(g() % V);
  tok[5] = V;
  tok[40] = -3;
  auto table = random_uniform((size_t)V * C, 16), dout = random_uniform((size_t)N * C, 17),
       dt0 = random_uniform((size_t)V * C, 18);
  DevBuf dtok(&gpu, tok), dtab(&gpu, table), ddo(&gpu, dout), dres(&gpu, (size_t)N * C * 4), ddt(&gpu, dt0),
      dscr(&gpu, (size_t)drl_embedding_scratch_bytes(&gpu, N));
  ASSERT_EQ(drl_embedding_forward(&gpu, dres.f(), dtok.i(), dtab.f(), N, C, V), DRL_OK) << drl_last_error();
  auto out = dres.get();
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      float v = out[(size_t)n * C + c];
      if (n == 5 || n == 40)
        ASSERT_TRUE(std::isnan(v)) << n;
      else
        ASSERT_EQ(v, table[(size_t)tok[n] * C + c]) << n;
    }
  ASSERT_EQ(drl_embedding_backward(&gpu, ddt.f(), ddo.f(), dtok.i(), N, C, V, dscr.p), DRL_OK) << drl_last_error();
  std::vector<int32_t> good;
  std::vector<float> good_dout;
  for (int n = 0; n < N; ++n)
    if (n != 5 && n != 40) {
      good.push_back(tok[n]);
      good_dout.insert(good_dout.end(), dout.begin() + (size_t)n * C, dout.begin() + (size_t)(n + 1) * C);
    }
  auto dt = dt0;
  drl_embedding_backward_cpu(dt.data(), good_dout.data(), good.data(), (int)good.size(), C, V);
  EXPECT_SAME_BITS(ddt.get(), dt, "backward without the bad positions");
  drl_device_close(&gpu);
}

namespace {

// cuBLAS against OpenBLAS for one GEMM: |gpu - cpu| <= tol * sum_k |alpha a_ik b_kj| + |beta c_ij|.
void check_gemm(drl_device *gpu, int ta, int tb, int M, int N, int K, float alpha, float beta, double tol,
                unsigned seed) {
  int a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
  int lda = a_cols + 3, ldb = b_cols + 1, ldc = N + 5;
  auto A = random_uniform((size_t)a_rows * lda, seed), B = random_uniform((size_t)b_rows * ldb, seed + 1);
  auto C0 = random_uniform((size_t)M * ldc, seed + 2);
  DevBuf dA(gpu, A), dB(gpu, B), dC(gpu, C0);
  ASSERT_EQ(drl_gemm(gpu, ta, tb, M, N, K, alpha, dA.f(), lda, dB.f(), ldb, beta, dC.f(), ldc), DRL_OK)
      << drl_last_error();
  auto C = C0;
  drl_device cpu = cpu_device();
  ASSERT_EQ(drl_gemm(&cpu, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc), DRL_OK);
  auto G = dC.get();
  double worst = 0.0;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < ldc; ++j) {
      size_t at = (size_t)i * ldc + j;
      if (j >= N) {  // padding untouched
        ASSERT_EQ(G[at], C0[at]) << "padding written at (" << i << ", " << j << ")";
        continue;
      }
      double mag = std::fabs(beta * C0[at]);
      for (int k = 0; k < K; ++k) {
        float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
        float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
        mag += std::fabs((double)alpha * a * b);
      }
      double rel = std::fabs((double)G[at] - C[at]) / (mag + 1e-30);
      if (!(rel <= worst)) worst = std::isnan(rel) ? INFINITY : rel;
    }
  EXPECT_LE(worst, tol) << "ta=" << ta << " tb=" << tb << " tf32=" << gpu->allow_tf32;
}

}  // namespace

TEST(GpuBasic, GemmMatchesCpuFp32AndTf32) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  for (int tf32 = 0; tf32 < 2; ++tf32) {
    gpu.allow_tf32 = tf32;
    // fp32: both sides round each product-sum once per step, in different orders. TF32 rounds the inputs to
    // 10 mantissa bits: about 1e-3 of each product.
    double tol = tf32 ? 2e-3 : 2e-5;
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) check_gemm(&gpu, ta, tb, 256, 192, 768, 1.25f, -0.5f, tol, 20 + 2 * ta + tb);
  }
  drl_device_close(&gpu);
}

TEST(GpuBasic, GemmBatchedAndKZero) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  const int M = 64, N = 48, K = 32, batch = 5;
  const int64_t sa = M * K + 16, sb = K * N + 8, sc = M * N + 4;
  auto A = random_uniform(sa * batch, 30), B = random_uniform(sb * batch, 31), C0 = random_uniform(sc * batch, 32);
  DevBuf dA(&gpu, A), dB(&gpu, B), dC(&gpu, C0);
  ASSERT_EQ(drl_gemm_strided_batched(&gpu, 1, 0, M, N, K, 1.0f, dA.f(), M, sa, dB.f(), N, sb, 1.0f, dC.f(), N, sc,
                                     batch),
            DRL_OK)
      << drl_last_error();
  auto C = C0;
  ASSERT_EQ(drl_gemm_strided_batched_cpu(1, 0, M, N, K, 1.0f, A.data(), M, sa, B.data(), N, sb, 1.0f, C.data(), N,
                                         sc, batch),
            DRL_OK);
  expect_close(dC.get(), C, 1e-5, 1e-5, "strided batched");

  // K = 0: the product is zero; beta = 0 clears even NaN.
  std::vector<float> nan(12, NAN), ones(12, 1.0f);
  DevBuf dn(&gpu, nan), d1(&gpu, ones);
  ASSERT_EQ(drl_gemm(&gpu, 0, 0, 3, 4, 0, 1.0f, dA.f(), 1, dB.f(), 4, 0.0f, dn.f(), 4), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_gemm(&gpu, 0, 0, 3, 4, 0, 1.0f, dA.f(), 1, dB.f(), 4, 0.5f, d1.f(), 4), DRL_OK) << drl_last_error();
  for (float v : dn.get()) EXPECT_EQ(v, 0.0f);
  for (float v : d1.get()) EXPECT_EQ(v, 0.5f);
  drl_device_close(&gpu);
}

TEST(GpuBasic, MatmulForwardBackwardMatchCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  gpu.allow_tf32 = 0;
  const int rows = 4096, in = 768, out = 512;
  auto x = random_uniform((size_t)rows * in, 40), w = random_uniform((size_t)out * in, 41),
       dy = random_uniform((size_t)rows * out, 42);
  auto y0 = random_uniform((size_t)rows * out, 43), dx0 = random_uniform((size_t)rows * in, 44),
       dw0 = random_uniform((size_t)out * in, 45);
  DevBuf dX(&gpu, x), dW(&gpu, w), dDY(&gpu, dy), dY(&gpu, y0), dDX(&gpu, dx0), dDW(&gpu, dw0);
  drl_device cpu = cpu_device();
  auto y = y0, dx = dx0, dw = dw0;
  ASSERT_EQ(drl_matmul_forward(&gpu, dY.f(), dX.f(), dW.f(), rows, in, out, 1), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_matmul_forward(&cpu, y.data(), x.data(), w.data(), rows, in, out, 1), DRL_OK);
  // |terms| ~ sqrt(in) * E|x w| ~ 7; errors are a few ulp of that.
  expect_close(dY.get(), y, 2e-5 * std::sqrt((double)in), 1e-5, "matmul forward (accumulate)");
  ASSERT_EQ(drl_matmul_backward(&gpu, dDX.f(), dDW.f(), dDY.f(), dX.f(), dW.f(), rows, in, out), DRL_OK)
      << drl_last_error();
  ASSERT_EQ(drl_matmul_backward(&cpu, dx.data(), dw.data(), dy.data(), x.data(), w.data(), rows, in, out), DRL_OK);
  expect_close(dDX.get(), dx, 2e-5 * std::sqrt((double)out), 1e-5, "matmul dinp");
  expect_close(dDW.get(), dw, 2e-5 * std::sqrt((double)rows), 1e-5, "matmul dweight");
  drl_device_close(&gpu);
}
