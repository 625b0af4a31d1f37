/* Prompt sets as JSONL, one object per line (blank lines skipped):
 *   {"prompt": "What is 2 + 3?", "answer": "5", "system": "optional"}
 *   {"messages": [{"role": "user", "content": "..."}, ...], "answer": "5"}
 *   {"prompt_ids": [151644, 872, ...], "answer": "5"}        (already tokenized, e.g. by a chat template in Python)
 * Exactly one of prompt, messages and prompt_ids; answer is a string (a JSON number is taken as its text); system is
 * optional and goes with prompt or messages. Other keys are ignored (datasets carry their own metadata). Every error
 * names the file, the line and the column: "prompts.jsonl:12:5: ...". */
#ifndef DRL_PROMPT_JSONL_H
#define DRL_PROMPT_JSONL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_chat_message {
  char *role;    /* system, user or assistant */
  char *content;
} drl_chat_message;

typedef struct drl_prompt_record {
  int64_t line;               /* 1-based line of the file */
  char *prompt;               /* NULL unless the line has "prompt" */
  drl_chat_message *messages; /* n_messages entries, NULL unless the line has "messages" */
  int n_messages;
  int32_t *prompt_ids;        /* n_ids ids, NULL unless the line has "prompt_ids" */
  int64_t n_ids;
  char *system;               /* NULL when absent */
  char *answer;
} drl_prompt_record;

typedef struct drl_prompt_set {
  int64_t n;
  drl_prompt_record *records;
} drl_prompt_set;

/* Parses the JSONL text[0, len) (named `name` in messages) into set. On failure set is empty. */
drl_status drl_prompt_jsonl_parse(const char *name, const char *text, size_t len, drl_prompt_set *set);

/* Reads and parses the file at path. */
drl_status drl_prompt_jsonl_read(const char *path, drl_prompt_set *set);

/* Frees set and zeroes it; safe on a zeroed set. */
void drl_prompt_set_free(drl_prompt_set *set);

#ifdef __cplusplus
}
#endif
#endif /* DRL_PROMPT_JSONL_H */
