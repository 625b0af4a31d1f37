/* Fuzz target: JSONL prompt sets (data/prompt_jsonl.h). Input: the bytes of a file, parsed from a heap copy of their
 * exact size. Checked: a rejected file leaves the set empty; an accepted one holds, per record, exactly one of prompt,
 * messages and prompt_ids, an answer, and a line inside the file. */
#include <stdlib.h>
#include <string.h>

#include "data/prompt_jsonl.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *copy = (char *)calloc(size ? size : 1, 1);
  if (!copy) return 0;
  if (size) memcpy(copy, data, size);
  drl_prompt_set set;
  drl_status st = drl_prompt_jsonl_parse("input", copy, size, &set);
  int64_t lines = 1;
  for (size_t i = 0; i < size; ++i) lines += copy[i] == '\n';
  free(copy);
  if (st != DRL_OK) {
    FUZZ_CHECK(set.n == 0 && set.records == NULL, "a rejected file leaves the set empty");
    return 0;
  }
  FUZZ_CHECK(set.n >= 1, "an accepted file has a prompt");
  for (int64_t i = 0; i < set.n; ++i) {
    const drl_prompt_record *r = &set.records[i];
    int kinds = (r->prompt != NULL) + (r->n_messages > 0) + (r->n_ids > 0);
    FUZZ_CHECK(kinds == 1, "record %lld has %d kinds", (long long)i, kinds);
    FUZZ_CHECK(r->answer != NULL, "record %lld has no answer", (long long)i);
    FUZZ_CHECK(r->line >= 1 && r->line <= lines, "record %lld at line %lld of %lld", (long long)i, (long long)r->line,
               (long long)lines);
  }
  drl_prompt_set_free(&set);
  return 0;
}
