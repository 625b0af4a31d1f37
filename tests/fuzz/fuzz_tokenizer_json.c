/* Fuzz target: loading a tokenizer.json (data/bpe.h).
 *
 * Input: the bytes of the file. When they are accepted, the tokenizer must encode a fixed text mixing scripts,
 * white space and added-token look-alikes, every id must be inside the vocabulary, and decoding must return
 * well-formed UTF-8 (a fuzzed vocabulary need not give the text back). When refused, the message names the input. */
#include <string.h>

#include "data/bpe.h"
#include "data/utf8.h"
#include "fuzz.h"

static const char kText[] = "Hello, World! don't  \t 1234567\r\n\xE4\xB8\xAD\xE6\x96\x87 e\xCC\x81 <|im_end|><s> \xF0\x9F\x98\x80";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  drl_tokenizer t;
  if (drl_bpe_load_json("input.json", (const char *)data, size, &t) != DRL_OK) {
    FUZZ_CHECK(strstr(drl_last_error(), "input.json") != NULL, "the refusal does not name the file: %s",
               drl_last_error());
    FUZZ_CHECK(t.ops == NULL && t.impl == NULL, "a refused file leaves the tokenizer empty");
    return 0;
  }
  drl_ids ids = {0};
  drl_text text = {0};
  for (int add = 0; add < 2; ++add) {
    FUZZ_CHECK(drl_tokenizer_encode(&t, kText, (int64_t)sizeof kText - 1, add, &ids) == DRL_OK,
               "an accepted tokenizer does not encode: %s", drl_last_error());
    int32_t size_v = drl_tokenizer_vocab_size(&t);
    for (int64_t i = 0; i < ids.n; ++i)
      FUZZ_CHECK(ids.v[i] >= 0 && ids.v[i] < size_v, "id %d outside the vocabulary of %d", (int)ids.v[i], (int)size_v);
    FUZZ_CHECK(drl_tokenizer_decode(&t, ids.v, ids.n, add, &text) == DRL_OK, "the ids do not decode: %s",
               drl_last_error());
    FUZZ_CHECK(drl_utf8_invalid_at((const uint8_t *)text.s, (size_t)text.n) == (size_t)text.n,
               "the decoded text is not well-formed UTF-8");
  }
  drl_ids_free(&ids);
  drl_text_free(&text);
  drl_tokenizer_free(&t);
  return 0;
}
