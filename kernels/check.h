/* Check macros: a failed library call becomes a drl_status with file, line, the call and the library's message.
 * Each macro names only the library's own types and functions, so this header includes none of them: include
 * the library's header where you use its macro. H5_CHECK lives in data/h5.h (only `data` touches HDF5). */
#ifndef DRL_CHECK_H
#define DRL_CHECK_H

#include "status.h"

#define CUDA_CHECK(call)                                                                  \
  do {                                                                                    \
    cudaError_t drl_e_ = (call);                                                          \
    if (drl_e_ != cudaSuccess)                                                            \
      return DRL_FAIL(DRL_ERR_CUDA, "%s: %s (%s)", #call, cudaGetErrorString(drl_e_),     \
                      cudaGetErrorName(drl_e_));                                          \
  } while (0)

#define CUBLAS_CHECK(call)                                                                \
  do {                                                                                    \
    cublasStatus_t drl_e_ = (call);                                                       \
    if (drl_e_ != CUBLAS_STATUS_SUCCESS)                                                  \
      return DRL_FAIL(DRL_ERR_CUDA, "%s: %s", #call, cublasGetStatusString(drl_e_));      \
  } while (0)

#define CURAND_CHECK(call)                                                                \
  do {                                                                                    \
    curandStatus_t drl_e_ = (call);                                                       \
    if (drl_e_ != CURAND_STATUS_SUCCESS)                                                  \
      return DRL_FAIL(DRL_ERR_CUDA, "%s: curand status %d", #call, (int)drl_e_);          \
  } while (0)

#define NCCL_CHECK(call)                                                                  \
  do {                                                                                    \
    ncclResult_t drl_e_ = (call);                                                         \
    if (drl_e_ != ncclSuccess)                                                            \
      return DRL_FAIL(DRL_ERR_NCCL, "%s: %s", #call, ncclGetErrorString(drl_e_));         \
  } while (0)

#define MPI_CHECK(call)                                                                   \
  do {                                                                                    \
    int drl_e_ = (call);                                                                  \
    if (drl_e_ != MPI_SUCCESS) {                                                          \
      char drl_msg_[MPI_MAX_ERROR_STRING];                                                \
      int drl_len_ = 0;                                                                   \
      if (MPI_Error_string(drl_e_, drl_msg_, &drl_len_) != MPI_SUCCESS) drl_len_ = 0;     \
      drl_msg_[drl_len_] = '\0';                                                          \
      return DRL_FAIL(DRL_ERR_MPI, "%s: %s", #call, drl_msg_);                            \
    }                                                                                     \
  } while (0)

#endif /* DRL_CHECK_H */
