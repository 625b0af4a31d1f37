#include "str_map.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a: keys are short token texts; never 0, which marks an empty slot. */
static uint32_t hash_bytes(const void *key, size_t len) {
  const uint8_t *p = (const uint8_t *)key;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; ++i) h = (h ^ p[i]) * 16777619u;
  return h ? h : 1;
}

static drl_status alloc_slots(drl_str_map *m, int64_t slots) {
  m->hash = (uint32_t *)calloc((size_t)slots, sizeof *m->hash);
  m->val = (int32_t *)malloc((size_t)slots * sizeof *m->val);
  m->klen = (int32_t *)malloc((size_t)slots * sizeof *m->klen);
  m->koff = (int64_t *)malloc((size_t)slots * sizeof *m->koff);
  if (!m->hash || !m->val || !m->klen || !m->koff)
    return DRL_FAIL(DRL_ERR_OOM, "out of memory for a table of %lld strings", (long long)slots);
  m->mask = slots - 1;
  return DRL_OK;
}

drl_status drl_str_map_init(drl_str_map *m, int64_t expected) {
  memset(m, 0, sizeof *m);
  int64_t slots = 16;
  while (slots < 2 * expected) slots *= 2;
  drl_status st = alloc_slots(m, slots);
  if (st != DRL_OK) drl_str_map_free(m);
  return st;
}

static int64_t find_slot(const drl_str_map *m, const void *key, size_t len, uint32_t h) {
  int64_t i = h & m->mask;
  while (m->hash[i]) {
    if (m->hash[i] == h && (size_t)m->klen[i] == len && memcmp(m->keys + m->koff[i], key, len) == 0) return i;
    i = (i + 1) & m->mask;
  }
  return i;
}

static drl_status grow(drl_str_map *m) {
  drl_str_map old = *m;
  drl_status st = alloc_slots(m, 2 * (old.mask + 1));
  if (st != DRL_OK) {
    free(m->hash), free(m->val), free(m->klen), free(m->koff);
    *m = old;
    return st;
  }
  for (int64_t i = 0; i <= old.mask; ++i) {
    if (!old.hash[i]) continue;
    int64_t j = old.hash[i] & m->mask;
    while (m->hash[j]) j = (j + 1) & m->mask;
    m->hash[j] = old.hash[i], m->val[j] = old.val[i], m->klen[j] = old.klen[i], m->koff[j] = old.koff[i];
  }
  free(old.hash), free(old.val), free(old.klen), free(old.koff);
  return DRL_OK;
}

drl_status drl_str_map_put(drl_str_map *m, const void *key, size_t len, int32_t val, int32_t *old) {
  if (len > INT32_MAX) return DRL_FAIL(DRL_ERR_INVALID_ARG, "a key of %zu bytes is too long", len);
  uint32_t h = hash_bytes(key, len);
  int64_t i = find_slot(m, key, len, h);
  if (m->hash[i]) {
    if (old) *old = m->val[i];
    return DRL_OK;
  }
  if (old) *old = -1;
  if (2 * (m->count + 1) > m->mask + 1) {
    DRL_TRY(grow(m));
    i = find_slot(m, key, len, h);
  }
  if (m->keys_n + (int64_t)len > m->keys_cap) {
    int64_t cap = m->keys_cap ? m->keys_cap : 1024;
    while (cap < m->keys_n + (int64_t)len) cap *= 2;
    char *k = (char *)realloc(m->keys, (size_t)cap);
    if (!k) return DRL_FAIL(DRL_ERR_OOM, "out of memory for %lld bytes of keys", (long long)cap);
    m->keys = k, m->keys_cap = cap;
  }
  if (len) memcpy(m->keys + m->keys_n, key, len);
  m->hash[i] = h, m->val[i] = val, m->klen[i] = (int32_t)len, m->koff[i] = m->keys_n;
  m->keys_n += (int64_t)len;
  m->count++;
  return DRL_OK;
}

int32_t drl_str_map_get(const drl_str_map *m, const void *key, size_t len) {
  if (!m->hash) return -1;
  int64_t i = find_slot(m, key, len, hash_bytes(key, len));
  return m->hash[i] ? m->val[i] : -1;
}

void drl_str_map_clear(drl_str_map *m) {
  if (m->hash) memset(m->hash, 0, (size_t)(m->mask + 1) * sizeof *m->hash);
  m->count = 0, m->keys_n = 0;
}

void drl_str_map_free(drl_str_map *m) {
  if (!m) return;
  free(m->hash), free(m->val), free(m->klen), free(m->koff), free(m->keys);
  memset(m, 0, sizeof *m);
}
