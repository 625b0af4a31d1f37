/* A named-tensor offset table over one flat fp32 buffer: parameters, gradients and optimizer moments share it, so
 * checkpointing, all-reduce and sharding see one buffer. Models build it; files store and compare it. */
#ifndef DRL_LAYOUT_H
#define DRL_LAYOUT_H

#include <stdint.h>

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

/* Frees the table and zeroes layout. */
void drl_layout_free(drl_layout *layout);

#ifdef __cplusplus
}
#endif
#endif /* DRL_LAYOUT_H */
