#include "layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void drl_layout_free(drl_layout *lay) {
  free(lay->tensors);
  memset(lay, 0, sizeof *lay);
}
