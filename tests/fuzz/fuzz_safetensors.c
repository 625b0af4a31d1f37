/* Fuzz target: the safetensors reader (data/safetensors.h).
 *
 * Input: the bytes of a file. They are parsed from a heap copy of exactly their size (a read past the end is an ASan
 * finding), and when the header is accepted: every tensor lies inside the data section, the tensors tile it, and the
 * same bytes opened as a file read every F32 / BF16 / F16 tensor without error. */
#include <stdlib.h>
#include <string.h>

#include "data/safetensors.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  unsigned char *copy = (unsigned char *)malloc(size ? size : 1);
  if (!copy) return 0;
  if (size) memcpy(copy, data, size);
  drl_st_header h;
  drl_status st = drl_st_parse("input", copy, size, &h);
  free(copy);
  if (st != DRL_OK) {
    FUZZ_CHECK(h.count == 0 && h.tensors == NULL, "a rejected header leaves the table empty");
    return 0;
  }
  uint64_t data_bytes = size - h.data_start, covered = 0;
  for (int i = 0; i < h.count; ++i) {
    const drl_st_tensor *t = &h.tensors[i];
    FUZZ_CHECK(t->begin <= t->end && t->end <= data_bytes, "tensor %s [%llu, %llu) outside %llu data bytes", t->name,
               (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)data_bytes);
    covered += t->end - t->begin;
  }
  FUZZ_CHECK(covered == data_bytes, "the tensors cover %llu of %llu data bytes", (unsigned long long)covered,
             (unsigned long long)data_bytes);
  drl_st_header_free(&h);

  const char *path = fuzz_temp_path("input.safetensors");
  fuzz_write_file(path, data, size);
  drl_safetensors set;
  FUZZ_CHECK(drl_st_open(&set, path) == DRL_OK, "a parsed file does not open: %s", drl_last_error());
  for (int i = 0; i < set.count; ++i) {
    const drl_st_tensor *t = &set.tensors[i];
    FUZZ_CHECK(drl_st_find(&set, t->name) == t, "tensor %s is not found by name", t->name);
    int readable = !strcmp(t->dtype, "F32") || !strcmp(t->dtype, "BF16") || !strcmp(t->dtype, "F16");
    if (!readable || t->numel > (1 << 24)) continue;
    float *out = (float *)malloc((size_t)(t->numel ? t->numel : 1) * sizeof *out);
    if (!out) continue;
    FUZZ_CHECK(drl_st_read_f32(&set, t, out) == DRL_OK, "tensor %s does not read: %s", t->name, drl_last_error());
    free(out);
  }
  drl_st_close(&set);
  return 0;
}
