#include "layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"

drl_status drl_layout_init(drl_layout *lay, int cap) {
  memset(lay, 0, sizeof *lay);
  if (cap < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "layout: negative capacity %d", cap);
  lay->tensors = (drl_tensor_info *)calloc((size_t)(cap ? cap : 1), sizeof *lay->tensors);
  if (!lay->tensors) return DRL_FAIL(DRL_ERR_OOM, "out of memory for a table of %d tensors", cap);
  lay->cap = cap;
  return DRL_OK;
}

drl_status drl_layout_add(drl_layout *lay, const char *name, int64_t rows, int64_t cols, int decay) {
  if (lay->count >= lay->cap) return DRL_FAIL(DRL_ERR_INTERNAL, "layout: more than %d tensors", lay->cap);
  if (rows < 0 || cols < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "layout: %s has a negative shape", name);
  if (strlen(name) >= DRL_TENSOR_NAME_CAP)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "layout: tensor name '%s' longer than %d", name, DRL_TENSOR_NAME_CAP - 1);
  drl_tensor_info *t = &lay->tensors[lay->count++];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->offset = lay->total;
  t->shape[0] = rows;
  t->shape[1] = cols;
  t->decay = decay;
  lay->total += rows * cols;
  return DRL_OK;
}

const drl_tensor_info *drl_layout_find(const drl_layout *lay, const char *name) {
  for (int i = 0; i < lay->count; ++i)
    if (strcmp(lay->tensors[i].name, name) == 0) return &lay->tensors[i];
  return NULL;
}

drl_status drl_layout_compare(const drl_layout *a, const drl_layout *b, const char *what_a, const char *what_b) {
  int n = a->count < b->count ? a->count : b->count;
  for (int i = 0; i < n; ++i) {
    const drl_tensor_info *x = &a->tensors[i], *y = &b->tensors[i];
    if (strcmp(x->name, y->name) != 0)
      return DRL_FAIL(DRL_ERR_FORMAT, "tensor %d is '%s' in %s but '%s' in %s", i, x->name, what_a, y->name, what_b);
    if (x->shape[0] != y->shape[0] || x->shape[1] != y->shape[1])
      return DRL_FAIL(DRL_ERR_FORMAT, "tensor '%s' has shape [%lld, %lld] in %s but [%lld, %lld] in %s", x->name,
                      (long long)x->shape[0], (long long)x->shape[1], what_a, (long long)y->shape[0],
                      (long long)y->shape[1], what_b);
    if (x->offset != y->offset)
      return DRL_FAIL(DRL_ERR_FORMAT, "tensor '%s' starts at %lld in %s but at %lld in %s", x->name,
                      (long long)x->offset, what_a, (long long)y->offset, what_b);
  }
  if (a->count != b->count) {
    const drl_layout *longer = a->count > b->count ? a : b;
    return DRL_FAIL(DRL_ERR_FORMAT, "%s has %d tensors but %s has %d (first extra: '%s')", what_a, a->count, what_b,
                    b->count, longer->tensors[n].name);
  }
  return DRL_OK;
}

drl_status drl_layout_first_nonfinite(const drl_device *dev, const drl_layout *lay, const float *buf, int64_t lo,
                                      int64_t hi, const drl_tensor_info **found) {
  *found = NULL;
  int64_t largest = 0;
  for (int i = 0; i < lay->count; ++i)
    if (lay->tensors[i].shape[0] * lay->tensors[i].shape[1] > largest)
      largest = lay->tensors[i].shape[0] * lay->tensors[i].shape[1];
  float *host = (float *)malloc((size_t)(largest ? largest : 1) * sizeof(float));
  if (!host)
    return DRL_FAIL(DRL_ERR_OOM, "out of memory scanning a tensor of %lld floats for non-finite values",
                    (long long)largest);
  drl_status st = DRL_OK;
  for (int i = 0; st == DRL_OK && !*found && i < lay->count; ++i) {
    const drl_tensor_info *t = &lay->tensors[i];
    int64_t a = t->offset > lo ? t->offset : lo, end = t->offset + t->shape[0] * t->shape[1], b = end < hi ? end : hi;
    if (a >= b) continue;
    st = drl_copy_to_host(dev, host, buf + a, (size_t)(b - a) * sizeof(float));
    for (int64_t j = 0; st == DRL_OK && j < b - a; ++j)
      if (!isfinite(host[j])) {
        *found = t;
        break;
      }
  }
  free(host);
  return st;
}

drl_status drl_layout_inject_grad_fault(const drl_device *dev, const drl_layout *lay, float *grads, int rank,
                                        int64_t step, int *injected) {
  if (injected) *injected = 0;
  const char *kinds[2] = {"nan_grad", "inf_grad"}, *detail = "";
  for (int k = 0; k < 2; ++k) {
    if (!drl_fault_value(kinds[k], rank, step, &detail)) continue;
    const drl_tensor_info *t = detail[0] ? drl_layout_find(lay, detail) : (lay->count ? &lay->tensors[0] : NULL);
    if (!t)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "DYNRL_FAULT %s names tensor '%s', which the layout does not hold", kinds[k],
                      detail);
    float v = k == 0 ? NAN : INFINITY;
    DRL_TRY(drl_copy_to_device(dev, grads + t->offset, &v, sizeof v));
    DRL_TRY(drl_device_sync(dev)); /* v lives on this stack */
    if (injected) *injected = 1;
  }
  return DRL_OK;
}

void drl_layout_free(drl_layout *lay) {
  free(lay->tensors);
  memset(lay, 0, sizeof *lay);
}
