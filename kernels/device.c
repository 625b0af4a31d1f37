#include "device.h"

#include <cblas.h>
#include <omp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copy kinds passed to drl_cuda_copy (values of cudaMemcpyKind). */
enum { COPY_H2D = 1, COPY_D2H = 2, COPY_D2D = 3 };

int drl_cuda_device_count(void) { return drl_cuda_count(); }

void drl_cpu_set_threads(int n) {
  if (n <= 0) return;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int drl_cpu_threads(void) { return omp_get_max_threads(); }

drl_status drl_device_open(drl_device *dev, drl_backend backend, int index) {
  if (!dev) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_device_open: NULL device");
  memset(dev, 0, sizeof *dev);
  if (backend == DRL_BACKEND_CPU) return DRL_OK;
  if (backend != DRL_BACKEND_CUDA) return DRL_FAIL(DRL_ERR_INVALID_ARG, "unknown backend %d", (int)backend);
  return drl_cuda_open(dev, index);
}

void drl_device_close(drl_device *dev) {
  if (dev && dev->backend == DRL_BACKEND_CUDA) drl_cuda_close(dev);
  if (dev) memset(dev, 0, sizeof *dev);
}

void drl_device_describe(const drl_device *dev, char *buf, size_t cap) {
  if (dev->backend == DRL_BACKEND_CUDA)
    drl_cuda_describe(dev, buf, cap);
  else
    snprintf(buf, cap, "cpu");
}

drl_status drl_alloc(const drl_device *dev, void **ptr, size_t bytes, const char *what) {
  *ptr = NULL;
  if (dev->backend == DRL_BACKEND_CUDA) return drl_cuda_alloc(dev, ptr, bytes, what);
  /* 64-byte alignment keeps every buffer on its own cache lines and suits AVX-512 loads. */
  size_t rounded = (bytes + 63) & ~(size_t)63;
  void *p = rounded >= bytes && rounded ? aligned_alloc(64, rounded) : NULL;
  if (bytes && !p) return drl_fail_oom(what, bytes, "cpu");
  if (p) memset(p, 0, rounded);
  *ptr = p;
  return DRL_OK;
}

drl_status drl_fail_oom(const char *what, size_t bytes, const char *where) {
  const char *unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = (double)bytes;
  int u = 0;
  for (; v >= 1024.0 && u < 6; ++u) v /= 1024.0;
  return DRL_FAIL(DRL_ERR_OOM, "out of memory allocating %s (%.*f %s, %zu bytes) on %s", what, u ? 1 : 0, v, unit[u],
                  bytes, where);
}

drl_status drl_host_alloc(void **ptr, size_t bytes, const char *what) {
  *ptr = calloc(1, bytes ? bytes : 1);
  return *ptr ? DRL_OK : drl_fail_oom(what, bytes, "the host");
}

void drl_free(const drl_device *dev, void *ptr) {
  if (!ptr) return;
  if (dev->backend == DRL_BACKEND_CUDA)
    drl_cuda_free(dev, ptr);
  else
    free(ptr);
}

drl_status drl_memset(const drl_device *dev, void *ptr, int value, size_t bytes) {
  if (dev->backend == DRL_BACKEND_CUDA) return drl_cuda_memset(dev, ptr, value, bytes);
  if (bytes) memset(ptr, value, bytes);
  return DRL_OK;
}

drl_status drl_copy_to_device(const drl_device *dev, void *dst, const void *src, size_t bytes) {
  if (dev->backend == DRL_BACKEND_CUDA) return drl_cuda_copy(dev, dst, src, bytes, COPY_H2D);
  if (bytes) memmove(dst, src, bytes);
  return DRL_OK;
}

drl_status drl_copy_to_host(const drl_device *dev, void *dst, const void *src, size_t bytes) {
  if (dev->backend == DRL_BACKEND_CUDA) return drl_cuda_copy(dev, dst, src, bytes, COPY_D2H);
  if (bytes) memmove(dst, src, bytes);
  return DRL_OK;
}

drl_status drl_copy_on_device(const drl_device *dev, void *dst, const void *src, size_t bytes) {
  const char *s = (const char *)src;
  char *d = (char *)dst;
  /* cudaMemcpyAsync is undefined on overlapping ranges: both backends refuse them, so the twins agree (a copy onto
   * itself is nothing to do on either). */
  if (d == s) return DRL_OK;
  if (bytes && d < s + bytes && s < d + bytes)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_copy_on_device: the ranges of %zu bytes overlap", bytes);
  if (dev->backend == DRL_BACKEND_CUDA) return drl_cuda_copy(dev, dst, src, bytes, COPY_D2D);
  const size_t chunk = (size_t)1 << 20;
  if (bytes < 4 * chunk) {
    if (bytes) memcpy(dst, src, bytes);
    return DRL_OK;
  }
  /* Large activation copies: one core cannot saturate memory bandwidth. */
  int64_t n = (int64_t)((bytes + chunk - 1) / chunk);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    size_t off = (size_t)i * chunk, len = bytes - off < chunk ? bytes - off : chunk;
    memcpy(d + off, s + off, len);
  }
  return DRL_OK;
}

drl_status drl_device_sync(const drl_device *dev) {
  if (dev->backend == DRL_BACKEND_CUDA) return drl_cuda_sync(dev);
  return DRL_OK;
}

drl_status drl_device_fork(const drl_device *base, drl_device *out) {
  if (base->backend == DRL_BACKEND_CUDA) return drl_cuda_fork(base, out);
  *out = *base;
  return DRL_OK;
}

drl_status drl_device_wait(const drl_device *waiter, const drl_device *other) {
  if (waiter->backend == DRL_BACKEND_CUDA) return drl_cuda_wait(waiter, other);
  return DRL_OK;
}

#ifndef DRL_HAVE_CUDA
/* Built without CUDA: every CUDA request is a clear error. */
static drl_status no_cuda(void) {
  return DRL_FAIL(DRL_ERR_UNSUPPORTED, "this dynrl was built without CUDA (configure with -DDYNRL_CUDA=ON)");
}
int drl_cuda_count(void) { return 0; }
drl_status drl_cuda_open(drl_device *dev, int index) {
  (void)dev;
  (void)index;
  return no_cuda();
}
void drl_cuda_close(drl_device *dev) { (void)dev; }
void drl_cuda_describe(const drl_device *dev, char *buf, size_t cap) {
  (void)dev;
  snprintf(buf, cap, "cuda (not built)");
}
drl_status drl_cuda_alloc(const drl_device *dev, void **ptr, size_t bytes, const char *what) {
  (void)dev, (void)ptr, (void)bytes, (void)what;
  return no_cuda();
}
void drl_cuda_free(const drl_device *dev, void *ptr) { (void)dev, (void)ptr; }
drl_status drl_cuda_memset(const drl_device *dev, void *ptr, int value, size_t bytes) {
  (void)dev, (void)ptr, (void)value, (void)bytes;
  return no_cuda();
}
drl_status drl_cuda_copy(const drl_device *dev, void *dst, const void *src, size_t bytes, int kind) {
  (void)dev, (void)dst, (void)src, (void)bytes, (void)kind;
  return no_cuda();
}
drl_status drl_cuda_sync(const drl_device *dev) {
  (void)dev;
  return no_cuda();
}
drl_status drl_cuda_fork(const drl_device *base, drl_device *out) {
  (void)base, (void)out;
  return no_cuda();
}
drl_status drl_cuda_wait(const drl_device *waiter, const drl_device *other) {
  (void)waiter, (void)other;
  return no_cuda();
}
#endif
