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

/* A text prompt set (`dynrl data import`) is a dataset of task "text" whose ids come from a tokenizer, not a
 * character vocabulary (vocab is ""). It also holds, per prompt, the answer as text (what rewards on decoded text
 * compare with), the chat template that rendered the prompts and the identity of the tokenizer. */
#define DRL_TEXT_TASK "text"
#define DRL_TEMPLATE_NAME_CAP 32

typedef struct drl_dataset {
  char task[DRL_TASK_NAME_CAP];  /* "add", "sort", "keyfork", ..., or DRL_TEXT_TASK */
  char vocab[DRL_VOCAB_CAP];     /* character of token id i is vocab[i]; NUL-terminated ("" for a text set) */
  int32_t format_version;
  drl_token_seqs prompts;
  drl_token_seqs answers;        /* n = 0 and NULL arrays when the file has no /answers */
  /* text sets only (zero otherwise) */
  int32_t vocab_size;                    /* ids lie in [0, vocab_size): the tokenizer's size */
  char tokenizer_hash[17];               /* FNV-1a 64 (16 hex digits) of the tokenizer.json that made the ids */
  char template_name[DRL_TEMPLATE_NAME_CAP]; /* the chat template that rendered the prompts */
  char *answer_text;                     /* answer i is answer_text[answer_text_offsets[i], [i + 1]) */
  int64_t *answer_text_offsets;          /* prompts.n + 1 entries */
} drl_dataset;

/* Whether ds is a text prompt set. */
int drl_dataset_is_text(const drl_dataset *ds);

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
