#include "gemm.h"

#include <cblas.h>

#include "nvtx.h"

static drl_status check_shape(int trans_a, int trans_b, int M, int N, int K, int lda, int ldb, int ldc, int batch) {
  int a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  if (M < 0 || N < 0 || K < 0 || batch < 0)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "gemm: negative size M=%d N=%d K=%d batch=%d", M, N, K, batch);
  if (lda < (a_cols > 1 ? a_cols : 1) || ldb < (b_cols > 1 ? b_cols : 1) || ldc < (N > 1 ? N : 1))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "gemm: leading dimensions lda=%d ldb=%d ldc=%d too small for M=%d N=%d K=%d",
                    lda, ldb, ldc, M, N, K);
  return DRL_OK;
}

drl_status drl_gemm_strided_batched_cpu(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                                        int lda, int64_t stride_a, const float *B, int ldb, int64_t stride_b,
                                        float beta, float *C, int ldc, int64_t stride_c, int batch) {
  if (M == 0 || N == 0) return DRL_OK;
  for (int i = 0; i < batch; ++i) {
    float *c = C + (int64_t)i * stride_c;
    if (K == 0) { /* BLAS leaves C untouched when K = 0; we define the product as zero */
      for (int r = 0; r < M; ++r)
        for (int j = 0; j < N; ++j) c[(int64_t)r * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(int64_t)r * ldc + j];
      continue;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A + (int64_t)i * stride_a, lda, B + (int64_t)i * stride_b, ldb, beta, c, ldc);
  }
  return DRL_OK;
}

drl_status drl_gemm_strided_batched(const drl_device *dev, int trans_a, int trans_b, int M, int N, int K, float alpha,
                                    const float *A, int lda, int64_t stride_a, const float *B, int ldb,
                                    int64_t stride_b, float beta, float *C, int ldc, int64_t stride_c, int batch) {
  DRL_RANGE("gemm");
  DRL_TRY(check_shape(trans_a, trans_b, M, N, K, lda, ldb, ldc, batch));
  DRL_DISPATCH_CUDA(dev, drl_gemm_strided_batched_cuda(dev, trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B,
                                                       ldb, stride_b, beta, C, ldc, stride_c, batch));
  return drl_gemm_strided_batched_cpu(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C,
                                      ldc, stride_c, batch);
}

drl_status drl_gemm(const drl_device *dev, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  return drl_gemm_strided_batched(dev, trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

drl_status drl_matmul_forward(const drl_device *dev, float *out, const float *inp, const float *weight, int rows,
                              int in_dim, int out_dim, int accumulate) {
  return drl_gemm(dev, 0, 1, rows, out_dim, in_dim, 1.0f, inp, in_dim, weight, in_dim, accumulate ? 1.0f : 0.0f, out,
                  out_dim);
}

drl_status drl_matmul_backward(const drl_device *dev, float *dinp, float *dweight, const float *dout,
                               const float *inp, const float *weight, int rows, int in_dim, int out_dim) {
  if (dinp) DRL_TRY(drl_gemm(dev, 0, 0, rows, in_dim, out_dim, 1.0f, dout, out_dim, weight, in_dim, 1.0f, dinp, in_dim));
  if (dweight)
    DRL_TRY(drl_gemm(dev, 1, 0, out_dim, in_dim, rows, 1.0f, dout, out_dim, inp, in_dim, 1.0f, dweight, in_dim));
  return DRL_OK;
}
