/* Growable buffers of token ids and of text, the outputs of the tokenizers (data/tokenizer.h). */
#ifndef DRL_TEXT_BUF_H
#define DRL_TEXT_BUF_H

#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A growable id array: encode empties it, then appends. Free with drl_ids_free. */
typedef struct drl_ids {
  int32_t *v;
  int64_t n, cap;
} drl_ids;

/* A growable NUL-terminated byte string: decode empties it; the stream functions append. Free with drl_text_free. */
typedef struct drl_text {
  char *s;
  int64_t n, cap;
} drl_text;

/* Free the buffer and zero the struct. */
void drl_ids_free(drl_ids *ids);
void drl_text_free(drl_text *t);
/* Appends n bytes (keeps the NUL terminator). */
drl_status drl_text_append(drl_text *t, const void *bytes, int64_t n);
/* Appends one id. */
drl_status drl_ids_push(drl_ids *ids, int32_t id);

#ifdef __cplusplus
}
#endif
#endif /* DRL_TEXT_BUF_H */
