/* What the fuzz targets share: a reader that turns the fuzz input into decisions, a check that aborts (a finding
 * for libFuzzer, a failed test for the replay build) and a private temporary directory for the files they write. */
#ifndef DRL_FUZZ_H
#define DRL_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant the code under test promises; a violation aborts like a sanitizer finding. */
#define FUZZ_CHECK(cond, ...)                                                   \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "%s:%d: fuzz check failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                             \
      fprintf(stderr, "\n");                                                    \
      abort();                                                                  \
    }                                                                           \
  } while (0)

/* The input read front to back; past the end every read is 0, so a short input means "the defaults". */
typedef struct fuzz_input {
  const uint8_t *p;
  size_t n;
} fuzz_input;

static inline uint8_t fuzz_u8(fuzz_input *in) {
  if (in->n == 0) return 0;
  in->n--;
  return *in->p++;
}

static inline uint64_t fuzz_u64(fuzz_input *in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= (uint64_t)fuzz_u8(in) << (8 * i);
  return v;
}

/* Fills buf with the next bytes of the input (zeros past its end). */
static inline void fuzz_bytes(fuzz_input *in, void *buf, size_t n) {
  uint8_t *b = (uint8_t *)buf;
  for (size_t i = 0; i < n; ++i) b[i] = fuzz_u8(in);
}

/* The path of file name in this process's temporary directory (created on first use, removed at exit). */
const char *fuzz_temp_path(const char *name);

/* Writes size bytes to path; aborts when that fails (a full disk is no finding). */
void fuzz_write_file(const char *path, const uint8_t *data, size_t size);

#endif /* DRL_FUZZ_H */
