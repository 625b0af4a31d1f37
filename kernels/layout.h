/* A named-tensor offset table over one flat fp32 buffer: parameters, gradients and optimizer moments share it, so
 * checkpointing, all-reduce and sharding see one buffer. Models build it; files store and compare it. */
#ifndef DRL_LAYOUT_H
#define DRL_LAYOUT_H

#include <stdint.h>

#include "device.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DRL_TENSOR_NAME_CAP 48

/* One tensor: elements [offset, offset + shape[0] * shape[1]) of the flat buffer. */
typedef struct drl_tensor_info {
  char name[DRL_TENSOR_NAME_CAP];
  int64_t offset;
  int64_t shape[2]; /* rows, cols; vectors are [n, 1] */
  int decay;        /* weight decay applies (matrices yes, norm gains no) */
} drl_tensor_info;

typedef struct drl_layout {
  drl_tensor_info *tensors;
  int count, cap;
  int64_t total; /* elements in the flat buffer */
} drl_layout;

/* Empties layout and reserves room for cap tensors. */
drl_status drl_layout_init(drl_layout *layout, int cap);

/* Appends a rows x cols tensor at the current end of the buffer. */
drl_status drl_layout_add(drl_layout *layout, const char *name, int64_t rows, int64_t cols, int decay);

/* The tensor named name, or NULL. */
const drl_tensor_info *drl_layout_find(const drl_layout *layout, const char *name);

/* DRL_OK when a and b hold the same names, offsets and shapes in the same order; otherwise DRL_ERR_FORMAT naming the
 * first tensor that differs (what_a / what_b name the two sides in the message). */
drl_status drl_layout_compare(const drl_layout *a, const drl_layout *b, const char *what_a, const char *what_b);

/* Into *found: the first tensor of layout (in layout order) whose elements [lo, hi) of buf (a device buffer on dev
 * laid out by layout) hold a NaN or an infinity; NULL when they are all finite. Copies one tensor at a time to the
 * host: meant for the rare step whose gradient norm was not finite. */
drl_status drl_layout_first_nonfinite(const drl_device *dev, const drl_layout *layout, const float *buf, int64_t lo,
                                      int64_t hi, const drl_tensor_info **found);

/* Value faults of kernels/fault.h on a gradient: for a `nan_grad` or `inf_grad` spec covering rank and step, sets
 * the first element of the tensor its detail names (default: the layout's first tensor) of grads (device) to NaN or
 * +Inf. A name the layout lacks is DRL_ERR_INVALID_ARG. *injected (may be NULL) says whether one was set. */
drl_status drl_layout_inject_grad_fault(const drl_device *dev, const drl_layout *layout, float *grads, int rank,
                                        int64_t step, int *injected);

/* Frees the table and zeroes layout. */
void drl_layout_free(drl_layout *layout);

#ifdef __cplusplus
}
#endif
#endif /* DRL_LAYOUT_H */
