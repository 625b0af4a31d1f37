/* The dataset file (DESIGN §9): prompts (and optional answers) as flat int32 tokens with int64 offsets,
 * plus the character vocabulary and the task name. Every reader validates before it trusts. */
#ifndef DRL_DATASET_H
#define DRL_DATASET_H

#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DRL_DATASET_FORMAT_VERSION 1
#define DRL_TASK_NAME_CAP 32
#define DRL_VOCAB_CAP 256
/* Readers refuse files beyond these sizes before allocating (a corrupted header must not allocate terabytes). */
#define DRL_DATASET_MAX_SEQS ((int64_t)1 << 26)
#define DRL_DATASET_MAX_TOKENS ((int64_t)1 << 33)

/* A ragged array of token sequences: sequence i is tokens[offsets[i] .. offsets[i+1]). */
typedef struct drl_token_seqs {
  int64_t n;         /* number of sequences */
  int32_t *tokens;   /* offsets[n] tokens */
  int64_t *offsets;  /* n + 1 entries, offsets[0] = 0, non-decreasing */
} drl_token_seqs;

typedef struct drl_dataset {
  char task[DRL_TASK_NAME_CAP];  /* "add", "sort", "keyfork", ... */
  char vocab[DRL_VOCAB_CAP];     /* character of token id i is vocab[i]; NUL-terminated */
  int32_t format_version;
  drl_token_seqs prompts;
  drl_token_seqs answers;        /* n = 0 and NULL arrays when the file has no /answers */
} drl_dataset;

/* Writes ds to path atomically (temp file, fsync, rename): a crash leaves the previous file or the new one. */
drl_status drl_dataset_write(const char *path, const drl_dataset *ds);

/* Reads and validates a dataset file; on failure ds is left empty and the message names the problem. */
drl_status drl_dataset_read(const char *path, drl_dataset *ds);

/* Checks an in-memory dataset (offsets monotone and in range, tokens inside the vocabulary, answers match prompts). */
drl_status drl_dataset_validate(const drl_dataset *ds);

/* Frees the arrays of ds and zeroes it; safe on a zeroed dataset. */
void drl_dataset_free(drl_dataset *ds);

/* Allocates seqs for n sequences with n_tokens tokens in total (offsets zeroed). */
drl_status drl_token_seqs_alloc(drl_token_seqs *seqs, int64_t n, int64_t n_tokens);

/* The length of the longest of sequences [first, first + n) of seqs (0 when n is 0). */
int64_t drl_token_seqs_longest(const drl_token_seqs *seqs, int64_t first, int64_t n);

/* Frees seqs and zeroes it. */
void drl_token_seqs_free(drl_token_seqs *seqs);

#ifdef __cplusplus
}
#endif
#endif /* DRL_DATASET_H */
