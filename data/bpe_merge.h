/* The BPE merge table and merge loop (tokenizers' Word::merge_all): symbols in a doubly-linked list, a min-heap of
 * (rank, position) over ranked adjacent pairs; stale entries (a side already merged, or the pair changed) are
 * skipped when popped. O(n log n) in the piece length. */
#ifndef DRL_BPE_MERGE_H
#define DRL_BPE_MERGE_H

#include <stdint.h>

#include "data/text_buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* (left id, right id) -> (rank, merged id). */
typedef struct drl_bpe_merges {
  uint64_t *key; /* left << 32 | right; UINT64_MAX = empty */
  int32_t *rank, *merged;
  int64_t mask, count;
} drl_bpe_merges;

/* An empty table with room for n merges. */
drl_status drl_bpe_merges_init(drl_bpe_merges *m, int64_t n);

/* Sets the pair's rank and merged id; a pair given twice keeps the later rank (as tokenizers' HashMap does). */
void drl_bpe_merges_put(drl_bpe_merges *m, int32_t left, int32_t right, int32_t rank, int32_t merged);

/* 1 and the rank and merged id when the pair merges, else 0. */
int drl_bpe_merges_get(const drl_bpe_merges *m, int32_t left, int32_t right, int32_t *rank, int32_t *merged);

void drl_bpe_merges_free(drl_bpe_merges *m);

/* Scratch of the merge loop, grown on demand. */
typedef struct drl_bpe_work {
  int32_t *id, *prev, *next;
  int32_t *heap_rank, *heap_pos, *heap_merged;
  int64_t cap, heap_cap;
} drl_bpe_work;

/* Merges the symbols ids[0..n) as far as the table allows and appends the surviving ids to out. */
drl_status drl_bpe_merge(const drl_bpe_merges *m, drl_bpe_work *w, const int32_t *ids, int64_t n, drl_ids *out);

void drl_bpe_work_free(drl_bpe_work *w);

#ifdef __cplusplus
}
#endif
#endif /* DRL_BPE_MERGE_H */
