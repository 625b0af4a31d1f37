/* CUDA MoE ops over the shared math of moe.h. Router: one thread per token (K and E are small; the row math is
 * sequential by definition). Dispatch: CUB's LSD radix sort of (expert, assignment) pairs, stable, so the packing equals
 * the CPU's counting sort; offsets by binary search in the sorted keys, copied to the host. Combine: one thread per
 * (token, channel) with the k loop inside; dw one thread per assignment with the c loop inside, in the CPU's order.
 * No atomics anywhere: bit-identical to the CPU. */
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#include "check.h"
#include "cuda_launch.cuh"
#include "moe.h"

#define MOE_NAN __int_as_float(0x7fc00000)

static __global__ void route_kernel(float *scores, int32_t *sel, float *gates, const float *logits, const float *bias,
                                    int64_t R, int E, int K, int normalize, float route_scale) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < R; r += (int64_t)gridDim.x * blockDim.x)
    drl_moe_route_row(scores + r * E, sel + r * K, gates + r * K, logits + r * E, bias, E, K, normalize, route_scale);
}

/* A token whose sel holds an id outside [0, E) gets a NaN row (the CPU reports it; here that would need a sync). */
static __global__ void route_backward_kernel(float *dlogits, const float *dgates, const float *scores,
                                             const int32_t *sel, int64_t R, int E, int K, int normalize,
                                             float route_scale, const float *aux, const uint8_t *row_mask) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < R; r += (int64_t)gridDim.x * blockDim.x) {
    if (!drl_moe_sel_row_ok(sel + r * K, E, K)) {
      for (int e = 0; e < E; ++e) dlogits[r * E + e] = MOE_NAN;
      continue;
    }
    const float *row_aux = aux && (!row_mask || row_mask[r]) ? aux : NULL;
    drl_moe_route_backward_row(dlogits + r * E, dgates + r * K, scores + r * E, sel + r * K, E, K, normalize,
                               route_scale, row_aux);
  }
}

extern "C" drl_status drl_moe_route_cuda(const drl_device *dev, float *scores, int32_t *sel, float *gates,
                                         const float *logits, const float *bias, int64_t R, int E, int K,
                                         int normalize, float route_scale) {
  if (R <= 0) return DRL_OK;
  route_kernel<<<drl_grid_for(R, 128, 4096), 128, 0, DRL_STREAM(dev)>>>(scores, sel, gates, logits, bias, R, E, K,
                                                                        normalize, route_scale);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_moe_route_backward_cuda(const drl_device *dev, float *dlogits, const float *dgates,
                                                  const float *scores, const int32_t *sel, int64_t R, int E, int K,
                                                  int normalize, float route_scale, const float *aux,
                                                  const uint8_t *row_mask) {
  if (R <= 0) return DRL_OK;
  route_backward_kernel<<<drl_grid_for(R, 128, 4096), 128, 0, DRL_STREAM(dev)>>>(
      dlogits, dgates, scores, sel, R, E, K, normalize, route_scale, aux, row_mask);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

/* ---- dispatch ---- */

/* Sort input: keys are the experts, a bad one mapped to E (it sorts last and is missing from offsets[E], which is how
 * the host learns of it); values are the assignment indices. */
static __global__ void dispatch_input_kernel(uint32_t *keys, int32_t *vals, const int32_t *sel, int64_t n, int E) {
  for (int64_t a = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; a < n; a += (int64_t)gridDim.x * blockDim.x) {
    int32_t e = sel[a];
    keys[a] = e >= 0 && e < E ? (uint32_t)e : (uint32_t)E;
    vals[a] = (int32_t)a;
  }
}

static __global__ void dispatch_slot_kernel(int32_t *slot, const int32_t *order, int64_t n) {
  for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < n; p += (int64_t)gridDim.x * blockDim.x)
    slot[order[p]] = (int32_t)p;
}

/* offsets[e] = the first sorted position whose key is >= e (lower bound), e = 0..E. */
static __global__ void dispatch_offsets_kernel(int64_t *offsets, const uint32_t *keys, int64_t n, int E) {
  int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e > E) return;
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] < (uint32_t)e)
      lo = mid + 1;
    else
      hi = mid;
  }
  offsets[e] = lo;
}

/* Keys lie in [0, E]: the bits that range needs (fewer radix passes). */
static int dispatch_end_bit(int E) {
  int b = 1;
  while (((int64_t)1 << b) <= (int64_t)E) ++b;
  return b;
}

/* Scratch: keys in and out, values in (values out are `order` itself), the device offsets, then CUB's storage. */
static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

static cudaError_t dispatch_temp_bytes(int64_t n, int E, size_t *bytes) {
  *bytes = 0;
  return cub::DeviceRadixSort::SortPairs(nullptr, *bytes, (const uint32_t *)nullptr, (uint32_t *)nullptr,
                                         (const int32_t *)nullptr, (int32_t *)nullptr, (int)n, 0,
                                         dispatch_end_bit(E));
}

extern "C" int64_t drl_moe_dispatch_scratch_bytes_cuda(int64_t R, int K, int E) {
  int64_t n = R * K;
  if (n <= 0) return 0;
  size_t temp = 0;
  if (dispatch_temp_bytes(n, E, &temp) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  size_t arr = align256((size_t)n * 4);
  return (int64_t)(3 * arr + align256((size_t)(E + 1) * sizeof(int64_t)) + align256(temp));
}

extern "C" drl_status drl_moe_dispatch_cuda(const drl_device *dev, int32_t *order, int32_t *slot, int64_t *offsets,
                                            const int32_t *sel, int64_t R, int K, int E, void *scratch) {
  const int64_t n = R * K;
  if (n <= 0) {
    for (int e = 0; e <= E; ++e) offsets[e] = 0;
    return DRL_OK;
  }
  cudaStream_t stream = DRL_STREAM(dev);
  size_t arr = align256((size_t)n * 4), temp_bytes = 0;
  CUDA_CHECK(dispatch_temp_bytes(n, E, &temp_bytes));
  char *base = (char *)scratch;
  uint32_t *keys_in = (uint32_t *)base, *keys_out = (uint32_t *)(base + arr);
  int32_t *vals_in = (int32_t *)(base + 2 * arr);
  int64_t *d_offsets = (int64_t *)(base + 3 * arr);
  void *temp = base + 3 * arr + align256((size_t)(E + 1) * sizeof(int64_t));

  dispatch_input_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, stream>>>(keys_in, vals_in, sel, n, E);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, vals_in, order, (int)n, 0,
                                             dispatch_end_bit(E), stream));
  dispatch_slot_kernel<<<drl_grid_for(n, 256, 4096), 256, 0, stream>>>(slot, order, n);
  CUDA_CHECK(cudaGetLastError());
  dispatch_offsets_kernel<<<(E + 1 + 127) / 128, 128, 0, stream>>>(d_offsets, keys_out, n, E);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaMemcpyAsync(offsets, d_offsets, (size_t)(E + 1) * sizeof(int64_t), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  if (offsets[E] != n)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_moe_dispatch: %lld of the %lld expert ids in sel are outside [0, %d)",
                    (long long)(n - offsets[E]), (long long)n, E);
  return DRL_OK;
}

/* ---- gather, combine ---- */

static __global__ void gather_kernel(float *out, const float *in, const int32_t *order, int64_t n, int K, int C) {
  int64_t total = n * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t p = i / C, c = i % C;
    int32_t a = order[p];
    out[i] = drl_moe_index_ok(a, n) ? in[(int64_t)(a / K) * C + c] : MOE_NAN;
  }
}

static __device__ int slots_ok(const int32_t *slot, int K, int64_t n) {
  for (int k = 0; k < K; ++k)
    if (!drl_moe_index_ok(slot[k], n)) return 0;
  return 1;
}

static __global__ void combine_kernel(float *out, const float *y, const int32_t *slot, const float *w, int64_t R,
                                      int K, int C) {
  int64_t total = R * C, n = R * K;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i / C, c = i % C;
    const int32_t *s = slot + r * K;
    out[i] = slots_ok(s, K, n) ? drl_moe_combine_elem(out[i], y, s, w ? w + r * K : NULL, K, C, c) : MOE_NAN;
  }
}

static __global__ void combine_dy_kernel(float *dy, const float *dout, const int32_t *slot, const float *w, int64_t R,
                                         int K, int C) {
  int64_t total = R * C, n = R * K;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i / C, c = i % C;
    float g = dout[i];
    for (int k = 0; k < K; ++k) {
      int32_t p = slot[r * K + k];
      if (drl_moe_index_ok(p, n)) dy[(int64_t)p * C + c] = drl_fmul(w[r * K + k], g);
    }
  }
}

static __global__ void combine_dw_kernel(float *dw, const float *dout, const float *y, const int32_t *slot, int64_t R,
                                         int K, int C) {
  int64_t n = R * K;
  for (int64_t a = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; a < n; a += (int64_t)gridDim.x * blockDim.x) {
    int32_t p = slot[a];
    dw[a] = drl_moe_index_ok(p, n) ? drl_moe_dw_elem(dout + (a / K) * C, y + (int64_t)p * C, C) : MOE_NAN;
  }
}

extern "C" drl_status drl_moe_gather_cuda(const drl_device *dev, float *out, const float *in, const int32_t *order,
                                          int64_t R, int K, int C) {
  int64_t n = R * K;
  if (n <= 0 || C <= 0) return DRL_OK;
  gather_kernel<<<drl_grid_for(n * C, 256, 8192), 256, 0, DRL_STREAM(dev)>>>(out, in, order, n, K, C);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_moe_combine_cuda(const drl_device *dev, float *out, const float *y, const int32_t *slot,
                                           const float *w, int64_t R, int K, int C) {
  if (R <= 0 || C <= 0) return DRL_OK;
  combine_kernel<<<drl_grid_for(R * C, 256, 8192), 256, 0, DRL_STREAM(dev)>>>(out, y, slot, w, R, K, C);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}

extern "C" drl_status drl_moe_combine_backward_cuda(const drl_device *dev, float *dy, float *dw, const float *dout,
                                                    const float *y, const int32_t *slot, const float *w, int64_t R,
                                                    int K, int C) {
  if (R <= 0) return DRL_OK;
  if (C > 0) {
    combine_dy_kernel<<<drl_grid_for(R * C, 256, 8192), 256, 0, DRL_STREAM(dev)>>>(dy, dout, slot, w, R, K, C);
    CUDA_CHECK(cudaGetLastError());
  }
  combine_dw_kernel<<<drl_grid_for(R * K, 128, 4096), 128, 0, DRL_STREAM(dev)>>>(dw, dout, y, slot, R, K, C);
  CUDA_CHECK(cudaGetLastError());
  return DRL_OK;
}
