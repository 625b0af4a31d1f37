#include "text_buf.h"

#include <stdlib.h>
#include <string.h>

void drl_ids_free(drl_ids *ids) {
  if (!ids) return;
  free(ids->v);
  memset(ids, 0, sizeof *ids);
}

void drl_text_free(drl_text *t) {
  if (!t) return;
  free(t->s);
  memset(t, 0, sizeof *t);
}

drl_status drl_text_append(drl_text *t, const void *bytes, int64_t n) {
  if (t->n + n + 1 > t->cap) {
    int64_t cap = t->cap ? t->cap : 64;
    while (cap < t->n + n + 1) cap *= 2;
    char *s = (char *)realloc(t->s, (size_t)cap);
    if (!s) return DRL_FAIL(DRL_ERR_OOM, "out of memory for %lld bytes of decoded text", (long long)cap);
    t->s = s, t->cap = cap;
  }
  if (n > 0) memcpy(t->s + t->n, bytes, (size_t)n);
  t->n += n;
  t->s[t->n] = '\0';
  return DRL_OK;
}

drl_status drl_ids_push(drl_ids *ids, int32_t id) {
  if (ids->n == ids->cap) {
    int64_t cap = ids->cap ? 2 * ids->cap : 64;
    int32_t *v = (int32_t *)realloc(ids->v, (size_t)cap * sizeof *v);
    if (!v) return DRL_FAIL(DRL_ERR_OOM, "out of memory for %lld token ids", (long long)cap);
    ids->v = v, ids->cap = cap;
  }
  ids->v[ids->n++] = id;
  return DRL_OK;
}
