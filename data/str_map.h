/* A hash map from byte strings to int32 values (open addressing; the keys are copied). */
#ifndef DRL_STR_MAP_H
#define DRL_STR_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_str_map {
  uint32_t *hash; /* per slot; 0 = empty */
  int32_t *val, *klen;
  int64_t *koff;
  char *keys;
  int64_t keys_n, keys_cap, count, mask;
} drl_str_map;

/* An empty map with room for about `expected` keys before it grows. */
drl_status drl_str_map_init(drl_str_map *m, int64_t expected);

/* Inserts key -> val; when key is present its value is kept and *old receives it (else *old = -1). */
drl_status drl_str_map_put(drl_str_map *m, const void *key, size_t len, int32_t val, int32_t *old);

/* The value of key, or -1. */
int32_t drl_str_map_get(const drl_str_map *m, const void *key, size_t len);

/* Removes every key (keeps the memory). */
void drl_str_map_clear(drl_str_map *m);

void drl_str_map_free(drl_str_map *m);

#ifdef __cplusplus
}
#endif
#endif /* DRL_STR_MAP_H */
