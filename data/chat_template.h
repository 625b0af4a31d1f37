/* Chat templates: a conversation (or one user prompt) rendered as the text a chat model was trained on, ending with
 * the generation prompt (Hugging Face's add_generation_prompt=True), then encoded as apply_chat_template does (the
 * text with add_special = 0; the special tokens written in it are recognised). Each named template reproduces the
 * model's own Jinja template byte for byte for system, user and assistant messages (no tools):
 *   raw             the user prompt as is: no special tokens, no system prompt
 *   chatml          <|im_start|>{role}\n{content}<|im_end|>\n per message; no default system prompt
 *   qwen2           chatml with the default system prompt "You are a helpful assistant."
 *   qwen2.5         chatml with "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
 *   qwen3           chatml, no default; assistant turns after the last user turn keep their <think> block
 *   qwen3:nothink   qwen3 with "<think>\n\n</think>\n\n" after the generation prompt (enable_thinking=False)
 *   llama3          Llama-3.1/3.2: <|begin_of_text|>, a system block with the knowledge cutoff and a pinned date,
 *                   <|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|> per message */
#ifndef DRL_CHAT_TEMPLATE_H
#define DRL_CHAT_TEMPLATE_H

#include <stdint.h>

#include "data/prompt_jsonl.h"
#include "data/text_buf.h"
#include "data/tokenizer.h"
#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum drl_chat_kind {
  DRL_CHAT_RAW,
  DRL_CHAT_CHATML,
  DRL_CHAT_QWEN2,
  DRL_CHAT_QWEN25,
  DRL_CHAT_QWEN3,
  DRL_CHAT_QWEN3_NOTHINK,
  DRL_CHAT_LLAMA3
} drl_chat_kind;

/* llama3's "Today Date:" when none is given: Llama-3.1's fallback (Llama-3.2's template under transformers writes
 * today's date, which would make a prompt set's ids depend on the day it was encoded). */
#define DRL_CHAT_DEFAULT_DATE "26 Jul 2024"

typedef struct drl_chat_template {
  drl_chat_kind kind;
  const char *date; /* llama3's "Today Date:" (not copied); NULL is DRL_CHAT_DEFAULT_DATE */
} drl_chat_template;

/* The known names, comma-separated: "raw, chatml, qwen2, qwen2.5, qwen3, qwen3:nothink, llama3". */
const char *drl_chat_template_names(void);

/* The template called name (date NULL); an unknown name is DRL_ERR_INVALID_ARG listing the known ones. */
drl_status drl_chat_template_get(const char *name, drl_chat_template *out);

/* The name of t's kind. */
const char *drl_chat_template_name(const drl_chat_template *t);

/* Renders msgs[0..n) (roles system, user, assistant; n >= 1) into out (emptied first), ending with the generation
 * prompt. system, when not NULL, is a system message put before msgs ("" is an empty system prompt, which replaces
 * the template's default); msgs starting with a system message as well is DRL_ERR_INVALID_ARG. raw takes exactly one
 * user message and no system prompt. Content that is not valid UTF-8 is DRL_ERR_INVALID_ARG naming the message. */
drl_status drl_chat_render(const drl_chat_template *t, const char *system, const drl_chat_message *msgs, int n,
                           drl_text *out);

/* Renders one user prompt with an optional system prompt (NULL for none), as drl_chat_render. */
drl_status drl_chat_render_prompt(const drl_chat_template *t, const char *system, const char *prompt, drl_text *out);

/* Renders as drl_chat_render and encodes the text with tok (add_special = 0) into ids (emptied first). A tokenizer
 * without the template's tokens as added tokens (<|im_start|>... for chatml and qwen, <|begin_of_text|>,
 * <|start_header_id|>... for llama3) is DRL_ERR_INVALID_ARG naming the missing token. */
drl_status drl_chat_encode(const drl_chat_template *t, drl_tokenizer *tok, const char *system,
                           const drl_chat_message *msgs, int n, drl_ids *ids);

/* drl_chat_encode of one user prompt with an optional system prompt. */
drl_status drl_chat_encode_prompt(const drl_chat_template *t, drl_tokenizer *tok, const char *system,
                                  const char *prompt, drl_ids *ids);

#ifdef __cplusplus
}
#endif
#endif /* DRL_CHAT_TEMPLATE_H */
