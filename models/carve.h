/* Carving one device allocation into many buffers: a first pass with base NULL only sums the sizes (each rounded to
 * 256 bytes), a second pass over the allocation hands out the pointers.
 *
 * Under AddressSanitizer (the asan preset, CPU backend) every buffer is followed by a poisoned guard of
 * DRL_CARVE_GUARD bytes, and so is the rounding slack after it: a kernel that writes or reads past its buffer is an
 * ASan error at once, instead of landing silently in the neighbouring buffer of the same allocation. */
#ifndef DRL_CARVE_H
#define DRL_CARVE_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define DRL_CARVE_GUARD 256
#else
#define DRL_CARVE_GUARD 0
#endif

typedef struct drl_carve {
  char *base;
  size_t used;
} drl_carve;

static inline void *drl_carve_take(drl_carve *c, size_t bytes) {
  char *p = c->base ? c->base + c->used : NULL;
  size_t rounded = (bytes + 255) & ~(size_t)255;
#if DRL_CARVE_GUARD
  if (p) ASAN_POISON_MEMORY_REGION(p + bytes, rounded - bytes + DRL_CARVE_GUARD);
#endif
  c->used += rounded + DRL_CARVE_GUARD;
  return p;
}

#endif /* DRL_CARVE_H */
