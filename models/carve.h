/* Carving one device allocation into many buffers: a first pass with base NULL only sums the sizes (each rounded to
 * 256 bytes), a second pass over the allocation hands out the pointers. */
#ifndef DRL_CARVE_H
#define DRL_CARVE_H

#include <stddef.h>

typedef struct drl_carve {
  char *base;
  size_t used;
} drl_carve;

static inline void *drl_carve_take(drl_carve *c, size_t bytes) {
  void *p = c->base ? c->base + c->used : NULL;
  c->used += (bytes + 255) & ~(size_t)255;
  return p;
}

#endif /* DRL_CARVE_H */
