/* CUDA half of kernels/device: stream, cuBLAS handle, allocation and copies. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include "check.h"
#include "device.h"

#define STREAM(dev) ((cudaStream_t)(dev)->stream)

extern "C" int drl_cuda_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError(); /* clear the sticky "no driver" error so later calls report their own */
    return 0;
  }
  return n;
}

extern "C" drl_status drl_cuda_open(drl_device *dev, int index) {
  int n = drl_cuda_count();
  if (n == 0) return DRL_FAIL(DRL_ERR_NO_DEVICE, "a CUDA device was requested but no GPU is visible");
  if (index < 0 || index >= n)
    return DRL_FAIL(DRL_ERR_NO_DEVICE, "CUDA device %d requested but only %d visible", index, n);
  CUDA_CHECK(cudaSetDevice(index));
  /* Stream-ordered allocation where the device has memory pools (cudaMalloc elsewhere); freed blocks stay in the
   * pool instead of going back to the driver at every synchronisation. */
  int pools = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, index));
  if (pools) {
    cudaMemPool_t pool;
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, index));
    uint64_t keep = UINT64_MAX;
    CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  }
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cublasHandle_t handle;
  cublasStatus_t cs = cublasCreate(&handle);
  if (cs != CUBLAS_STATUS_SUCCESS) {
    cudaStreamDestroy(stream);
    return DRL_FAIL(DRL_ERR_CUDA, "cublasCreate: %s", cublasGetStatusString(cs));
  }
  cs = cublasSetStream(handle, stream);
  if (cs != CUBLAS_STATUS_SUCCESS) {
    cublasDestroy(handle);
    cudaStreamDestroy(stream);
    return DRL_FAIL(DRL_ERR_CUDA, "cublasSetStream: %s", cublasGetStatusString(cs));
  }
  dev->backend = DRL_BACKEND_CUDA;
  dev->index = index;
  dev->stream = stream;
  dev->cublas = handle;
  dev->mem_pools = pools;
  return DRL_OK;
}

extern "C" void drl_cuda_close(drl_device *dev) {
  if (dev->cublas) cublasDestroy((cublasHandle_t)dev->cublas);
  if (dev->stream) cudaStreamDestroy(STREAM(dev));
  dev->cublas = NULL;
  dev->stream = NULL;
}

extern "C" drl_status drl_cuda_fork(const drl_device *base, drl_device *out) {
  CUDA_CHECK(cudaSetDevice(base->index));
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  *out = *base;
  out->stream = stream;
  out->cublas = NULL; /* a side stream runs no GEMMs */
  return DRL_OK;
}

extern "C" drl_status drl_cuda_wait(const drl_device *waiter, const drl_device *other) {
  cudaEvent_t ev;
  CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  cudaError_t e = cudaEventRecord(ev, STREAM(other));
  if (e == cudaSuccess) e = cudaStreamWaitEvent(STREAM(waiter), ev, 0);
  cudaEventDestroy(ev); /* legal while pending: the wait keeps its own reference */
  CUDA_CHECK(e);
  return DRL_OK;
}

extern "C" void drl_cuda_describe(const drl_device *dev, char *buf, size_t cap) {
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, dev->index) == cudaSuccess)
    snprintf(buf, cap, "cuda:%d %s (sm_%d%d, %.1f GiB)", dev->index, prop.name, prop.major, prop.minor,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
  else
    snprintf(buf, cap, "cuda:%d", dev->index);
}

extern "C" drl_status drl_cuda_alloc(const drl_device *dev, void **ptr, size_t bytes, const char *what) {
  if (bytes == 0) return DRL_OK;
  cudaError_t e = dev->mem_pools ? cudaMallocAsync(ptr, bytes, STREAM(dev)) : cudaMalloc(ptr, bytes);
  if (e != cudaSuccess) {
    *ptr = NULL;
    size_t free_b = 0, total_b = 0;
    cudaGetLastError();
    cudaMemGetInfo(&free_b, &total_b);
    return DRL_FAIL(e == cudaErrorMemoryAllocation ? DRL_ERR_OOM : DRL_ERR_CUDA,
                    "allocating %s (%zu bytes) failed: %s (%zu of %zu bytes free)", what, bytes,
                    cudaGetErrorString(e), free_b, total_b);
  }
  CUDA_CHECK(cudaMemsetAsync(*ptr, 0, bytes, STREAM(dev)));
  return DRL_OK;
}

extern "C" void drl_cuda_free(const drl_device *dev, void *ptr) {
  if (dev->mem_pools)
    cudaFreeAsync(ptr, STREAM(dev));
  else
    cudaFree(ptr); /* waits for the device: the buffer's last use has finished */
}

extern "C" drl_status drl_cuda_memset(const drl_device *dev, void *ptr, int value, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemsetAsync(ptr, value, bytes, STREAM(dev)));
  return DRL_OK;
}

extern "C" drl_status drl_cuda_copy(const drl_device *dev, void *dst, const void *src, size_t bytes, int kind) {
  if (!bytes) return DRL_OK;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, (cudaMemcpyKind)kind, STREAM(dev)));
  if (kind == cudaMemcpyDeviceToHost) CUDA_CHECK(cudaStreamSynchronize(STREAM(dev)));
  return DRL_OK;
}

extern "C" drl_status drl_cuda_sync(const drl_device *dev) {
  CUDA_CHECK(cudaStreamSynchronize(STREAM(dev)));
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
