#include "bpe_merge.h"

#include <stdlib.h>
#include <string.h>

static inline uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static inline int64_t slot_of(uint64_t key, int64_t mask) {
  return (int64_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
}

drl_status drl_bpe_merges_init(drl_bpe_merges *m, int64_t n) {
  memset(m, 0, sizeof *m);
  int64_t slots = 16;
  while (slots < 2 * n) slots *= 2;
  m->key = (uint64_t *)malloc((size_t)slots * sizeof *m->key);
  m->rank = (int32_t *)malloc((size_t)slots * sizeof *m->rank);
  m->merged = (int32_t *)malloc((size_t)slots * sizeof *m->merged);
  if (!m->key || !m->rank || !m->merged) {
    drl_bpe_merges_free(m);
    return DRL_FAIL(DRL_ERR_OOM, "out of memory for a table of %lld merges", (long long)n);
  }
  memset(m->key, 0xFF, (size_t)slots * sizeof *m->key);
  m->mask = slots - 1;
  return DRL_OK;
}

void drl_bpe_merges_put(drl_bpe_merges *m, int32_t left, int32_t right, int32_t rank, int32_t merged) {
  uint64_t k = pair_key(left, right);
  int64_t i = slot_of(k, m->mask);
  while (m->key[i] != UINT64_MAX && m->key[i] != k) i = (i + 1) & m->mask;
  if (m->key[i] == UINT64_MAX) m->count++;
  m->key[i] = k, m->rank[i] = rank, m->merged[i] = merged;
}

int drl_bpe_merges_get(const drl_bpe_merges *m, int32_t left, int32_t right, int32_t *rank, int32_t *merged) {
  uint64_t k = pair_key(left, right);
  int64_t i = slot_of(k, m->mask);
  while (m->key[i] != UINT64_MAX) {
    if (m->key[i] == k) {
      *rank = m->rank[i], *merged = m->merged[i];
      return 1;
    }
    i = (i + 1) & m->mask;
  }
  return 0;
}

void drl_bpe_merges_free(drl_bpe_merges *m) {
  if (!m) return;
  free(m->key), free(m->rank), free(m->merged);
  memset(m, 0, sizeof *m);
}

void drl_bpe_work_free(drl_bpe_work *w) {
  if (!w) return;
  free(w->id), free(w->prev), free(w->next), free(w->heap_rank), free(w->heap_pos), free(w->heap_merged);
  memset(w, 0, sizeof *w);
}

static drl_status reserve(drl_bpe_work *w, int64_t n) {
  if (n <= w->cap) return DRL_OK;
  int64_t cap = w->cap ? w->cap : 64;
  while (cap < n) cap *= 2;
  int64_t hcap = 3 * cap + 4; /* n - 1 initial pairs, at most 2 more per merge */
  int32_t *p[6] = {w->id, w->prev, w->next, w->heap_rank, w->heap_pos, w->heap_merged};
  int64_t sizes[6] = {cap, cap, cap, hcap, hcap, hcap};
  for (int i = 0; i < 6; ++i) {
    int32_t *q = (int32_t *)realloc(p[i], (size_t)sizes[i] * sizeof *q);
    if (!q) {
      w->id = p[0], w->prev = p[1], w->next = p[2], w->heap_rank = p[3], w->heap_pos = p[4], w->heap_merged = p[5];
      return DRL_FAIL(DRL_ERR_OOM, "out of memory merging a piece of %lld bytes", (long long)n);
    }
    p[i] = q;
  }
  w->id = p[0], w->prev = p[1], w->next = p[2], w->heap_rank = p[3], w->heap_pos = p[4], w->heap_merged = p[5];
  w->cap = cap, w->heap_cap = hcap;
  return DRL_OK;
}

/* Heap order: lower rank first, then the leftmost position (tokenizers' Merge ordering). */
static inline int before(const drl_bpe_work *w, int64_t a, int64_t b) {
  return w->heap_rank[a] < w->heap_rank[b] || (w->heap_rank[a] == w->heap_rank[b] && w->heap_pos[a] < w->heap_pos[b]);
}

static inline void heap_swap(drl_bpe_work *w, int64_t a, int64_t b) {
  int32_t r = w->heap_rank[a], p = w->heap_pos[a], m = w->heap_merged[a];
  w->heap_rank[a] = w->heap_rank[b], w->heap_pos[a] = w->heap_pos[b], w->heap_merged[a] = w->heap_merged[b];
  w->heap_rank[b] = r, w->heap_pos[b] = p, w->heap_merged[b] = m;
}

static void heap_push(drl_bpe_work *w, int64_t *size, int32_t rank, int32_t pos, int32_t merged) {
  int64_t i = (*size)++;
  w->heap_rank[i] = rank, w->heap_pos[i] = pos, w->heap_merged[i] = merged;
  while (i > 0 && before(w, i, (i - 1) / 2)) {
    heap_swap(w, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static void heap_pop(drl_bpe_work *w, int64_t *size) {
  heap_swap(w, 0, --*size);
  int64_t i = 0;
  for (;;) {
    int64_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < *size && before(w, l, m)) m = l;
    if (r < *size && before(w, r, m)) m = r;
    if (m == i) break;
    heap_swap(w, i, m);
    i = m;
  }
}

static void push_pair(const drl_bpe_merges *m, drl_bpe_work *w, int64_t *size, int32_t pos) {
  int32_t rank, merged, nx = w->next[pos];
  if (nx >= 0 && drl_bpe_merges_get(m, w->id[pos], w->id[nx], &rank, &merged)) heap_push(w, size, rank, pos, merged);
}

drl_status drl_bpe_merge(const drl_bpe_merges *m, drl_bpe_work *w, const int32_t *ids, int64_t n, drl_ids *out) {
  if (n <= 0) return DRL_OK;
  if (n > INT32_MAX / 4) return DRL_FAIL(DRL_ERR_INVALID_ARG, "a piece of %lld symbols is too long", (long long)n);
  DRL_TRY(reserve(w, n));
  for (int64_t i = 0; i < n; ++i) {
    w->id[i] = ids[i];
    w->prev[i] = (int32_t)i - 1;
    w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
  }
  int64_t size = 0;
  for (int64_t i = 0; i + 1 < n; ++i) push_pair(m, w, &size, (int32_t)i);
  while (size > 0) {
    int32_t pos = w->heap_pos[0], merged = w->heap_merged[0];
    heap_pop(w, &size);
    int32_t nx = w->next[pos], rank, now;
    /* Stale: pos was merged into its left neighbour (id -1), it is last now, or the pair is no longer this one. */
    if (w->id[pos] < 0 || nx < 0 || !drl_bpe_merges_get(m, w->id[pos], w->id[nx], &rank, &now) || now != merged)
      continue;
    w->id[pos] = merged;
    w->id[nx] = -1;
    w->next[pos] = w->next[nx];
    if (w->next[nx] >= 0) w->prev[w->next[nx]] = pos;
    if (w->prev[pos] >= 0) push_pair(m, w, &size, w->prev[pos]);
    push_pair(m, w, &size, pos);
  }
  for (int32_t i = 0; i >= 0; i = w->next[i]) DRL_TRY(drl_ids_push(out, w->id[i]));
  return DRL_OK;
}
