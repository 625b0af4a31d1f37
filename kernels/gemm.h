/* GEMM: OpenBLAS (cblas_sgemm) on the CPU, cuBLAS on the GPU (TF32 when dev->allow_tf32). All matrices row-major.
 * Weights follow the PyTorch nn.Linear layout W[out, in], so y = x W^T. */
#ifndef DRL_GEMM_H
#define DRL_GEMM_H

#include <stdint.h>

#include "device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* C[M,N] = alpha * op(A) * op(B) + beta * C; op(X) = X^T when trans_x. lda/ldb/ldc are row strides in elements
 * (A is M×K, or K×M when transposed). beta = 0 overwrites C even if it holds NaN. */
drl_status drl_gemm(const drl_device *dev, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* batch independent GEMMs; matrix i of X starts at X + i * stride_x. */
drl_status drl_gemm_strided_batched(const drl_device *dev, int trans_a, int trans_b, int M, int N, int K, float alpha,
                                    const float *A, int lda, int64_t stride_a, const float *B, int ldb,
                                    int64_t stride_b, float beta, float *C, int ldc, int64_t stride_c, int batch);

/* out[rows, out_dim] = inp[rows, in_dim] · W[out_dim, in_dim]^T, added to out when accumulate. */
drl_status drl_matmul_forward(const drl_device *dev, float *out, const float *inp, const float *weight, int rows,
                              int in_dim, int out_dim, int accumulate);

/* Backward of drl_matmul_forward: dinp[rows, in_dim] += dout · W (skipped when dinp is NULL) and
 * dweight[out_dim, in_dim] += dout^T · inp (skipped when dweight is NULL). */
drl_status drl_matmul_backward(const drl_device *dev, float *dinp, float *dweight, const float *dout,
                               const float *inp, const float *weight, int rows, int in_dim, int out_dim);

drl_status drl_gemm_strided_batched_cpu(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                                        int lda, int64_t stride_a, const float *B, int ldb, int64_t stride_b,
                                        float beta, float *C, int ldc, int64_t stride_c, int batch);
drl_status drl_gemm_strided_batched_cuda(const drl_device *dev, int trans_a, int trans_b, int M, int N, int K,
                                         float alpha, const float *A, int lda, int64_t stride_a, const float *B,
                                         int ldb, int64_t stride_b, float beta, float *C, int ldc, int64_t stride_c,
                                         int batch);

#ifdef __cplusplus
}
#endif
#endif /* DRL_GEMM_H */
