/* Fuzz target: the dataset reader (data/dataset.h: drl_dataset_read).
 *
 * Structure-aware (the default build): the input is a recipe for a dataset file (prompt and answer lengths and
 * tokens, then for each attribute and array whether it is written as intended or changed; fuzz_h5.h), written
 * with the HDF5 API to a temporary file which the reader opens, so the fuzzer exercises our checks of types,
 * shapes, offsets, tokens and the vocabulary. With FUZZ_RAW_BYTES: the input is the file's bytes (mutations of
 * real files), which reaches libhdf5's own parsing. Checked: a file the reader accepts passes
 * drl_dataset_validate and every sequence decodes with its vocabulary; a refusal has a message. */
#include <string.h>

#include "data/dataset.h"
#include "data/vocab.h"
#include "fuzz_h5.h"

#define VOCAB "0123456789+=$"
#define MAX_SEQS 16
#define MAX_LEN 8

#ifndef FUZZ_RAW_BYTES
static void write_seqs(hid_t file, fuzz_input *in, const char *group, int n, const int32_t *tokens,
                       const int64_t *offsets) {
  char name[64];
  int64_t n1 = n + 1;
  snprintf(name, sizeof name, "/%s/offsets", group);
  fuzz_h5_array(file, in, name, DRL_H5_INT64, 1, &n1, offsets);
  snprintf(name, sizeof name, "/%s/tokens", group);
  fuzz_h5_array(file, in, name, DRL_H5_INT32, 1, &offsets[n], tokens);
}

/* Decodes the recipe into a dataset file at path. */
static void write_recipe(const char *path, const uint8_t *data, size_t size) {
  fuzz_input in = {data, size};
  int n = fuzz_u8(&in) % (MAX_SEQS + 1);
  int has_answers = !(fuzz_u8(&in) & 1);
  int32_t tokens[2][MAX_SEQS * MAX_LEN];
  int64_t offsets[2][MAX_SEQS + 1];
  for (int g = 0; g < 2; ++g) {
    offsets[g][0] = 0;
    for (int i = 0; i < n; ++i) {
      int len = 1 + fuzz_u8(&in) % MAX_LEN;
      for (int j = 0; j < len; ++j) tokens[g][offsets[g][i] + j] = fuzz_u8(&in) % (int)(sizeof VOCAB - 1);
      offsets[g][i + 1] = offsets[g][i] + len;
    }
  }
  hid_t file = fuzz_h5_create(path);
  if (file < 0) return;
  fuzz_h5_attr_int64(file, &in, "/", "format_version", DRL_DATASET_FORMAT_VERSION);
  fuzz_h5_attr_string(file, &in, "/", "vocab", VOCAB);
  fuzz_h5_attr_string(file, &in, "/", "task", "add");
  write_seqs(file, &in, "prompts", n, tokens[0], offsets[0]);
  if (has_answers) write_seqs(file, &in, "answers", n, tokens[1], offsets[1]);
  fuzz_h5_close(file);
}
#endif

static void check_seqs(const drl_dataset *ds, const drl_token_seqs *s) {
  char text[4096];
  for (int64_t i = 0; i < s->n; ++i) {
    int64_t len = s->offsets[i + 1] - s->offsets[i];
    if (len >= (int64_t)sizeof text) continue;
    FUZZ_CHECK(drl_vocab_decode(ds->vocab, s->tokens + s->offsets[i], len, text, sizeof text) == DRL_OK,
               "sequence %lld of an accepted dataset does not decode: %s", (long long)i, drl_last_error());
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_temp_path("dataset.h5");
#ifdef FUZZ_RAW_BYTES
  fuzz_write_file(path, data, size);
#else
  write_recipe(path, data, size);
#endif
  drl_dataset ds;
  if (drl_dataset_read(path, &ds) == DRL_OK) {
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "accepted\n");
    FUZZ_CHECK(drl_dataset_validate(&ds) == DRL_OK, "an accepted dataset fails validation: %s", drl_last_error());
    check_seqs(&ds, &ds.prompts);
    check_seqs(&ds, &ds.answers);
    drl_dataset_free(&ds);
  } else {
    FUZZ_CHECK(drl_last_error()[0] != '\0', "a refused dataset has no message");
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "refused: %s\n", drl_last_error());
    FUZZ_CHECK(ds.prompts.tokens == NULL && ds.prompts.offsets == NULL, "a refused dataset left arrays behind");
  }
  return 0;
}
