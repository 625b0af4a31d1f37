/* Byte-level BPE from a Hugging Face tokenizer.json (GPT-2, Llama-3, Qwen2/2.5/3 and their kind), behind the
 * tokenizer interface (data/tokenizer.h). What is read and what is refused: docs/text.md. */
#ifndef DRL_BPE_H
#define DRL_BPE_H

#include <stddef.h>

#include "data/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest vocabulary read (ids 0 .. 2^22 - 1; the largest hub vocabularies have about 2^18). */
#define DRL_BPE_MAX_VOCAB (1 << 22)

/* Loads the tokenizer.json at path into out (free with drl_tokenizer_free). Anything dynrl does not implement
 * exactly is DRL_ERR_FORMAT naming the file, the JSON path and the value. */
drl_status drl_bpe_load(const char *path, drl_tokenizer *out);

/* drl_bpe_load, and hash (not NULL) = drl_fnv1a64_hex of the file: which tokenizer.json made a set of ids. */
drl_status drl_bpe_load_hashed(const char *path, drl_tokenizer *out, char hash[17]);

/* The same from the bytes json[0..len); name stands for the file in messages. */
drl_status drl_bpe_load_json(const char *name, const char *json, size_t len, drl_tokenizer *out);

#ifdef __cplusplus
}
#endif
#endif /* DRL_BPE_H */
