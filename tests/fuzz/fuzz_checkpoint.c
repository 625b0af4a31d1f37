/* Fuzz target: the checkpoint reader (data/checkpoint.h: drl_checkpoint_read).
 *
 * Structure-aware (the default build): the input is a recipe for a checkpoint (tensor shapes of the layout, whether
 * it has optimizer moments and a MoE bias, then for each attribute and array whether it is written as intended or
 * changed; fuzz_h5.h), written with the HDF5 API to a temporary file which the reader opens, so the fuzzer
 * exercises our checks of the layout (names, offsets, shapes, total) and of every array against it. With
 * FUZZ_RAW_BYTES: the input is the file's bytes. Checked: an accepted checkpoint is complete and consistent, and
 * reading it again against its own layout succeeds; a refusal has a message and leaves nothing allocated. */
#include <string.h>

#include "data/checkpoint.h"
#include "fuzz_h5.h"

#define MAX_TENSORS 4

#ifndef FUZZ_RAW_BYTES
static const char config_text[] = "run:\n  seed: 7\n";

static void write_recipe(const char *path, const uint8_t *data, size_t size) {
  fuzz_input in = {data, size};
  int count = fuzz_u8(&in) % (MAX_TENSORS + 1);
  int has_optim = !(fuzz_u8(&in) & 1);
  int bias_n = fuzz_u8(&in) % 4;
  char names[MAX_TENSORS * 8 + 1] = "";
  int64_t offsets[MAX_TENSORS + 1], shapes[2 * MAX_TENSORS + 2], total = 0;
  for (int i = 0; i < count; ++i) {
    shapes[2 * i] = fuzz_u8(&in) % 5;
    shapes[2 * i + 1] = 1 + fuzz_u8(&in) % 4;
    offsets[i] = total;
    total += shapes[2 * i] * shapes[2 * i + 1];
    snprintf(names + strlen(names), sizeof names - strlen(names), "t%d\n", i);
  }
  float params[MAX_TENSORS * 16 + 1], bias[4] = {0.5f, -0.5f, 1.0f, 0.0f};
  for (int64_t i = 0; i < total; ++i) params[i] = (float)i * 0.25f;
  uint64_t seed = 1234;
  int64_t n_names = (int64_t)strlen(names), shape2[2] = {count, 2}, n_bias = bias_n,
          n_config = (int64_t)strlen(config_text), one = 1;

  hid_t file = fuzz_h5_create(path);
  if (file < 0) return;
  fuzz_h5_attr_int64(file, &in, "/", "format_version", DRL_CHECKPOINT_FORMAT_VERSION);
  fuzz_h5_array(file, &in, "/model/params", DRL_H5_FLOAT32, 1, &total, params);
  fuzz_h5_array(file, &in, "/model/layout/names", DRL_H5_UINT8, 1, &n_names, names);
  fuzz_h5_array(file, &in, "/model/layout/offsets", DRL_H5_INT64, 1, shape2, offsets);
  fuzz_h5_array(file, &in, "/model/layout/shapes", DRL_H5_INT64, 2, shape2, shapes);
  fuzz_h5_attr_int64(file, &in, "/model/layout", "total", total);
  if (has_optim) {
    fuzz_h5_array(file, &in, "/optim/m", DRL_H5_FLOAT32, 1, &total, params);
    fuzz_h5_array(file, &in, "/optim/v", DRL_H5_FLOAT32, 1, &total, params);
    fuzz_h5_attr_int64(file, &in, "/optim", "step", 3);
  }
  fuzz_h5_attr_int64(file, &in, "/trainer", "step", 5);
  fuzz_h5_attr_string(file, &in, "/trainer", "phase", "sft");
  fuzz_h5_attr_int64(file, &in, "/trainer", "threads", 1);
  if (bias_n) fuzz_h5_array(file, &in, "/moe/bias", DRL_H5_FLOAT32, 1, &n_bias, bias);
  fuzz_h5_array(file, &in, "/rng/seed", DRL_H5_UINT64, 1, &one, &seed);
  fuzz_h5_array(file, &in, "/config", DRL_H5_UINT8, 1, &n_config, config_text);
  /* Optional (files from before they existed lack them); last, so older recipes keep their meaning. */
  fuzz_h5_attr_int64(file, &in, "/trainer", "bad_steps", 1);
  fuzz_h5_attr_int64(file, &in, "/trainer", "bad_streak", 0);
  fuzz_h5_close(file);
}
#endif

static void check_accepted(const char *path, const drl_checkpoint *ck) {
  FUZZ_CHECK(ck->params != NULL && ck->config_yaml != NULL, "an accepted checkpoint lacks params or config");
  FUZZ_CHECK((ck->m == NULL) == (ck->v == NULL), "an accepted checkpoint has only one optimizer moment");
  FUZZ_CHECK(ck->moe_bias_n >= 0 && (ck->moe_bias_n == 0 || ck->moe_bias), "bad MoE bias");
  FUZZ_CHECK(memchr(ck->phase, '\0', sizeof ck->phase) != NULL, "phase is not terminated");
  int64_t at = 0;
  for (int i = 0; i < ck->layout.count; ++i) {
    const drl_tensor_info *t = &ck->layout.tensors[i];
    FUZZ_CHECK(t->offset == at && t->shape[0] >= 0 && t->shape[1] >= 0, "tensor %d does not follow the previous", i);
    at += t->shape[0] * t->shape[1];
  }
  FUZZ_CHECK(at == ck->layout.total, "the layout covers %lld, total %lld", (long long)at, (long long)ck->layout.total);
  drl_checkpoint again;
  FUZZ_CHECK(drl_checkpoint_read(path, &ck->layout, &again) == DRL_OK,
             "an accepted checkpoint does not match its own layout: %s", drl_last_error());
  FUZZ_CHECK(again.layout.total == ck->layout.total, "a second read differs");
  drl_checkpoint_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_temp_path("ckpt.h5");
#ifdef FUZZ_RAW_BYTES
  fuzz_write_file(path, data, size);
#else
  write_recipe(path, data, size);
#endif
  drl_checkpoint ck;
  if (drl_checkpoint_read(path, NULL, &ck) == DRL_OK) {
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "accepted\n");
    check_accepted(path, &ck);
    drl_checkpoint_free(&ck);
  } else {
    FUZZ_CHECK(drl_last_error()[0] != '\0', "a refused checkpoint has no message");
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "refused: %s\n", drl_last_error());
    FUZZ_CHECK(ck.params == NULL && ck.layout.tensors == NULL && ck.config_yaml == NULL,
               "a refused checkpoint left arrays behind");
  }
  return 0;
}
