/* cuBLAS GEMM. cuBLAS is column-major: a row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T,
 * so we swap the operands and the M/N roles instead of transposing anything. */
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "check.h"
#include "gemm.h"

extern "C" drl_status drl_gemm_strided_batched_cuda(const drl_device *dev, int trans_a, int trans_b, int M, int N,
                                                    int K, float alpha, const float *A, int lda, int64_t stride_a,
                                                    const float *B, int ldb, int64_t stride_b, float beta, float *C,
                                                    int ldc, int64_t stride_c, int batch) {
  if (M == 0 || N == 0 || batch == 0) return DRL_OK;
  cublasHandle_t h = (cublasHandle_t)dev->cublas;
  CUBLAS_CHECK(cublasSetMathMode(h, dev->allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH));
  cublasComputeType_t compute = dev->allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_PEDANTIC;
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                          N, M, K, &alpha, B, CUDA_R_32F, ldb, stride_b, A, CUDA_R_32F, lda, stride_a,
                                          &beta, C, CUDA_R_32F, ldc, stride_c, batch, compute, CUBLAS_GEMM_DEFAULT));
  return DRL_OK;
}
