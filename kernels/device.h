/* drl_device: where buffers live and ops run (CPU or one CUDA GPU with its stream and cuBLAS handle).
 * Every op takes a device and dispatches to op_cpu or op_cuda; buffers are raw pointers owned by the caller. */
#ifndef DRL_DEVICE_H
#define DRL_DEVICE_H

#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum drl_backend { DRL_BACKEND_CPU = 0, DRL_BACKEND_CUDA = 1 } drl_backend;

typedef struct drl_device {
  drl_backend backend;
  int index;       /* CUDA device ordinal; 0 for CPU */
  void *stream;    /* cudaStream_t (CUDA only) */
  void *cublas;    /* cublasHandle_t (CUDA only) */
  int allow_tf32;  /* GEMMs may use TF32 tensor cores (CUDA only; config optim.tf32) */
  int mem_pools;   /* stream-ordered allocation from the device's memory pool (CUDA only, where supported) */
} drl_device;

/* In an op's dispatching entry point: hands a CUDA device to the op's _cuda twin, or, in a build without CUDA,
 * returns DRL_ERR_UNSUPPORTED. Falls through for the CPU. */
#ifdef DRL_HAVE_CUDA
#define DRL_DISPATCH_CUDA(dev, call)                          \
  do {                                                        \
    if ((dev)->backend == DRL_BACKEND_CUDA) return (call);    \
  } while (0)
#else
#define DRL_DISPATCH_CUDA(dev, call)                                                              \
  do {                                                                                            \
    if ((dev)->backend == DRL_BACKEND_CUDA)                                                       \
      return DRL_FAIL(DRL_ERR_UNSUPPORTED, "this dynrl was built without CUDA (configure with -DDYNRL_CUDA=ON)"); \
  } while (0)
#endif

/* Number of usable CUDA devices: 0 when built without CUDA or when none is visible. Never fails. */
int drl_cuda_device_count(void);

/* The work (elements, or elements x width) below which a CPU kernel's loop runs on one thread: there OpenMP's
 * fork and join cost more than they save. Results never depend on it (every reduction has a fixed order). The
 * cheaper the work per element, the more elements it takes to pay. */
#define DRL_OMP_MIN_CHEAP (1 << 16)  /* copies, adds, scales: a few flops per element */
#define DRL_OMP_MIN_GATHER (1 << 15) /* row gathers and scatters */
#define DRL_OMP_MIN_MATH (1 << 14)   /* transcendentals or a short reduction per element */
#define DRL_OMP_MIN_HEAVY (1 << 12)  /* tens of flops and a sampled normal per element */

/* Pins the CPU thread count of OpenMP loops and OpenBLAS GEMMs; 0 leaves the defaults (all cores). */
void drl_cpu_set_threads(int n);

/* The number of CPU threads OpenMP loops and GEMMs use now. */
int drl_cpu_threads(void);

/* Opens a CPU device, or CUDA device `index` with a fresh stream and cuBLAS handle; no GPU is DRL_ERR_NO_DEVICE. */
drl_status drl_device_open(drl_device *dev, drl_backend backend, int index);

/* Releases the stream and handle; safe on a zeroed or already-closed device. */
void drl_device_close(drl_device *dev);

/* A short description ("cpu" or "cuda:0 NVIDIA H100 ...") written into buf. */
void drl_device_describe(const drl_device *dev, char *buf, size_t cap);

/* Allocates `bytes` (zero-filled) on the device; `what` names the buffer in the error message. */
drl_status drl_alloc(const drl_device *dev, void **ptr, size_t bytes, const char *what);

/* A host buffer of `bytes` (zero-filled, at least 1 byte, free() it); out of memory names `what` and the size. */
drl_status drl_host_alloc(void **ptr, size_t bytes, const char *what);

/* DRL_ERR_OOM with "out of memory allocating <what> (1.2 GiB, 1288490188 bytes) on <where>". */
drl_status drl_fail_oom(const char *what, size_t bytes, const char *where);

/* Frees a buffer from drl_alloc; NULL is a no-op. */
void drl_free(const drl_device *dev, void *ptr);

/* Sets `bytes` bytes to `value` (stream-ordered on CUDA). */
drl_status drl_memset(const drl_device *dev, void *ptr, int value, size_t bytes);

/* Copies host -> device buffer (stream-ordered on CUDA; the host buffer may be reused after drl_device_sync). */
drl_status drl_copy_to_device(const drl_device *dev, void *dst, const void *src, size_t bytes);

/* Copies device buffer -> host and waits for it. */
drl_status drl_copy_to_host(const drl_device *dev, void *dst, const void *src, size_t bytes);

/* Copies within the device (stream-ordered on CUDA); ranges that overlap without being the same are
 * DRL_ERR_INVALID_ARG on every backend (a copy onto itself does nothing). */
drl_status drl_copy_on_device(const drl_device *dev, void *dst, const void *src, size_t bytes);

/* Waits until all work queued on the device's stream has finished, and reports any asynchronous error. */
drl_status drl_device_sync(const drl_device *dev);

/* A second stream on base's GPU (no cuBLAS handle): work queued there overlaps base's. On the CPU, a copy of base.
 * Close it with drl_device_close. */
drl_status drl_device_fork(const drl_device *base, drl_device *out);

/* Work queued on waiter after this call starts only when the work queued on other so far has finished (an event on
 * the GPU; nothing to do on the CPU, where work is done when queued). */
drl_status drl_device_wait(const drl_device *waiter, const drl_device *other);

/* The CUDA halves of the calls above; implemented in device.cu, or as DRL_ERR_UNSUPPORTED without CUDA. */
int drl_cuda_count(void);
drl_status drl_cuda_open(drl_device *dev, int index);
void drl_cuda_close(drl_device *dev);
void drl_cuda_describe(const drl_device *dev, char *buf, size_t cap);
drl_status drl_cuda_alloc(const drl_device *dev, void **ptr, size_t bytes, const char *what);
void drl_cuda_free(const drl_device *dev, void *ptr);
drl_status drl_cuda_memset(const drl_device *dev, void *ptr, int value, size_t bytes);
drl_status drl_cuda_copy(const drl_device *dev, void *dst, const void *src, size_t bytes, int kind);
drl_status drl_cuda_sync(const drl_device *dev);
drl_status drl_cuda_fork(const drl_device *base, drl_device *out);
drl_status drl_cuda_wait(const drl_device *waiter, const drl_device *other);

#ifdef __cplusplus
}
#endif
#endif /* DRL_DEVICE_H */
