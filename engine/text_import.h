/* `dynrl data import`: a JSONL prompt set (data/prompt_jsonl.h) encoded with a model directory's tokenizer into a
 * text prompt set file (data/dataset.h, task "text"). */
#ifndef DRL_TEXT_IMPORT_H
#define DRL_TEXT_IMPORT_H

#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_text_import_options {
  const char *template_name; /* a chat template of data/chat_template.h ("raw": a bare prompt as it is) */
  int max_prompt;            /* longest prompt in tokens; 0 = no limit */
  int drop_long;             /* longer prompts are dropped and counted instead of an error naming the line */
} drl_text_import_options;

typedef struct drl_text_import_stats {
  int64_t written, dropped;
  int64_t longest_prompt;
} drl_text_import_stats;

/* Reads jsonl, encodes every prompt with the tokenizer of model_dir (its tokenizer.json; its config.json's first
 * EOS id ends each answer's tokens) and writes out_h5: prompts as ids (prompt_ids lines as they are), the answers as
 * text and as tokens, the template and the tokenizer's hash. Nothing is written on error. */
drl_status drl_text_import(const char *jsonl, const char *model_dir, const drl_text_import_options *opt,
                           const char *out_h5, drl_text_import_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* DRL_TEXT_IMPORT_H */
