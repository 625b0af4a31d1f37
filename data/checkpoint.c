#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5.h"
#include "kernels/fault.h"

/* Bounds applied before allocating from sizes stored in a file. */
#define MAX_TENSORS (1 << 20)
#define MAX_PARAMS ((int64_t)1 << 36)
#define MAX_CONFIG_BYTES (1 << 24)

static drl_status write_layout(drl_h5_file *f, const drl_layout *lay) {
  size_t bytes = 1;
  for (int i = 0; i < lay->count; ++i) bytes += strlen(lay->tensors[i].name) + 1;
  char *names = (char *)malloc(bytes);
  int64_t *offsets = (int64_t *)malloc(sizeof(int64_t) * (size_t)(lay->count + 1));
  int64_t *shapes = (int64_t *)malloc(sizeof(int64_t) * 2 * (size_t)(lay->count + 1));
  drl_status st = DRL_OK;
  if (!names || !offsets || !shapes) st = DRL_FAIL(DRL_ERR_OOM, "out of memory writing a layout of %d tensors",
                                                   lay->count);
  size_t at = 0;
  for (int i = 0; st == DRL_OK && i < lay->count; ++i) {
    size_t n = strlen(lay->tensors[i].name);
    memcpy(names + at, lay->tensors[i].name, n);
    at += n;
    names[at++] = '\n';
    offsets[i] = lay->tensors[i].offset;
    shapes[2 * i] = lay->tensors[i].shape[0];
    shapes[2 * i + 1] = lay->tensors[i].shape[1];
  }
  int64_t shape2[2] = {lay->count, 2};
  if (st == DRL_OK) st = drl_h5_write_array1d(f, "/model/layout/names", DRL_H5_UINT8, (int64_t)at, names);
  if (st == DRL_OK) st = drl_h5_write_array1d(f, "/model/layout/offsets", DRL_H5_INT64, lay->count, offsets);
  if (st == DRL_OK) st = drl_h5_write_array(f, "/model/layout/shapes", DRL_H5_INT64, 2, shape2, shapes);
  if (st == DRL_OK) st = drl_h5_write_attr_int64(f, "/model/layout", "total", lay->total);
  free(names);
  free(offsets);
  free(shapes);
  return st;
}

drl_status drl_checkpoint_write(const char *path, const drl_checkpoint *ck) {
  if (!ck->params) return DRL_FAIL(DRL_ERR_INVALID_ARG, "checkpoint %s: no parameters to write", path);
  drl_status st = DRL_OK;
  drl_h5_writer w;
  DRL_TRY(drl_h5_writer_open(&w, path));
  drl_h5_file *f = &w.file;
  int64_t n = ck->layout.total;
  uint64_t seed = ck->seed;
  const char *cfg = ck->config_yaml ? ck->config_yaml : "";
  DRL_TRY_GOTO(drl_h5_write_attr_int64(f, "/", "format_version", DRL_CHECKPOINT_FORMAT_VERSION));
  DRL_TRY_GOTO(drl_h5_write_array1d(f, "/model/params", DRL_H5_FLOAT32, n, ck->params));
  DRL_TRY_GOTO(write_layout(f, &ck->layout));
  drl_fault_reach("ckpt_params"); /* a kill here leaves a temp file with parameters but no optimizer state */
  if (ck->m && ck->v) {
    DRL_TRY_GOTO(drl_h5_write_array1d(f, "/optim/m", DRL_H5_FLOAT32, n, ck->m));
    DRL_TRY_GOTO(drl_h5_write_array1d(f, "/optim/v", DRL_H5_FLOAT32, n, ck->v));
    DRL_TRY_GOTO(drl_h5_write_attr_int64(f, "/optim", "step", ck->optim_step));
  }
  DRL_TRY_GOTO(drl_h5_write_attr_int64(f, "/trainer", "step", ck->trainer_step));
  DRL_TRY_GOTO(drl_h5_write_attr_string(f, "/trainer", "phase", ck->phase));
  DRL_TRY_GOTO(drl_h5_write_attr_int64(f, "/trainer", "threads", ck->threads));
  DRL_TRY_GOTO(drl_h5_write_attr_int64(f, "/trainer", "bad_steps", ck->bad_steps));
  DRL_TRY_GOTO(drl_h5_write_attr_int64(f, "/trainer", "bad_streak", ck->bad_streak));
  if (ck->moe_bias && ck->moe_bias_n > 0)
    DRL_TRY_GOTO(drl_h5_write_array1d(f, "/moe/bias", DRL_H5_FLOAT32, ck->moe_bias_n, ck->moe_bias));
  DRL_TRY_GOTO(drl_h5_write_array1d(f, "/rng/seed", DRL_H5_UINT64, 1, &seed));
  DRL_TRY_GOTO(drl_h5_write_array1d(f, "/config", DRL_H5_UINT8, (int64_t)strlen(cfg), cfg));
  if (ck->hf_config) {
    DRL_TRY_GOTO(drl_h5_write_array1d(f, "/hf/config", DRL_H5_UINT8, (int64_t)strlen(ck->hf_config), ck->hf_config));
    DRL_TRY_GOTO(drl_h5_write_attr_string(f, "/hf", "model_type", ck->hf_model_type));
    DRL_TRY_GOTO(drl_h5_write_attr_string(f, "/hf", "source", ck->hf_source));
    DRL_TRY_GOTO(drl_h5_write_attr_string(f, "/hf", "config_hash", ck->hf_config_hash));
  }
  return drl_h5_writer_commit(&w);
done:
  drl_h5_writer_abort(&w);
  return st;
}

void drl_checkpoint_free(drl_checkpoint *ck) {
  drl_layout_free(&ck->layout);
  free(ck->params);
  free(ck->m);
  free(ck->v);
  free(ck->config_yaml);
  free(ck->moe_bias);
  free(ck->hf_config);
  memset(ck, 0, sizeof *ck);
}

/* The provenance group /hf, when the file has one. */
static drl_status read_hf(const drl_h5_file *f, drl_checkpoint *ck) {
  int has = 0;
  DRL_TRY(drl_h5_exists(f, "/hf/config", &has));
  if (!has) return DRL_OK;
  int64_t shape[1];
  void *text = NULL;
  DRL_TRY(drl_h5_read_array(f, "/hf/config", DRL_H5_UINT8, 1, shape, MAX_CONFIG_BYTES, &text));
  ck->hf_config = (char *)realloc(text, (size_t)shape[0] + 1);
  if (!ck->hf_config) {
    free(text);
    return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for /hf/config", f->path);
  }
  ck->hf_config[shape[0]] = '\0';
  DRL_TRY(drl_h5_read_attr_string(f, "/hf", "model_type", ck->hf_model_type, sizeof ck->hf_model_type));
  DRL_TRY(drl_h5_read_attr_string(f, "/hf", "source", ck->hf_source, sizeof ck->hf_source));
  DRL_TRY(drl_h5_read_attr_string(f, "/hf", "config_hash", ck->hf_config_hash, sizeof ck->hf_config_hash));
  char want[17];
  drl_fnv1a64_hex(ck->hf_config, (size_t)shape[0], want);
  if (strcmp(want, ck->hf_config_hash) != 0)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: /hf/config hashes to %s, its config_hash attribute says %s", f->path, want,
                    ck->hf_config_hash);
  return DRL_OK;
}

/* Reads /model/layout into lay, checking that the tensors tile [0, total) in order. */
static drl_status read_layout(const drl_h5_file *f, drl_layout *lay) {
  drl_status st = DRL_OK;
  char *names = NULL;
  int64_t *offsets = NULL, *shapes = NULL, total = 0;
  int64_t n_shape[1], o_shape[1], s_shape[2];
  DRL_TRY_GOTO(drl_h5_read_array(f, "/model/layout/names", DRL_H5_UINT8, 1, n_shape, 64 * (int64_t)MAX_TENSORS,
                                 (void **)&names));
  DRL_TRY_GOTO(drl_h5_read_array(f, "/model/layout/offsets", DRL_H5_INT64, 1, o_shape, MAX_TENSORS, (void **)&offsets));
  DRL_TRY_GOTO(drl_h5_read_array(f, "/model/layout/shapes", DRL_H5_INT64, 2, s_shape, 2 * (int64_t)MAX_TENSORS,
                                 (void **)&shapes));
  DRL_TRY_GOTO(drl_h5_read_attr_int64(f, "/model/layout", "total", &total));
  int count = (int)o_shape[0];
  if (s_shape[0] != count || s_shape[1] != 2) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s: /model/layout/shapes is [%lld, %lld], expected [%d, 2]", f->path,
                  (long long)s_shape[0], (long long)s_shape[1], count);
    goto done;
  }
  DRL_TRY_GOTO(drl_layout_init(lay, count));
  int64_t at = 0;
  for (int i = 0; i < count; ++i) {
    char *end = (char *)memchr(names + at, '\n', (size_t)(n_shape[0] - at));
    if (!end || end - (names + at) >= DRL_TENSOR_NAME_CAP) {
      st = DRL_FAIL(DRL_ERR_FORMAT, "%s: /model/layout/names does not hold %d names of < %d characters", f->path,
                    count, DRL_TENSOR_NAME_CAP);
      goto done;
    }
    *end = '\0';
    if (shapes[2 * i] < 0 || shapes[2 * i + 1] < 0 || offsets[i] != lay->total ||
        /* divided, not multiplied: the product of two dimensions from the file may overflow */
        (shapes[2 * i + 1] > 0 && shapes[2 * i] > (MAX_PARAMS - lay->total) / shapes[2 * i + 1])) {
      st = DRL_FAIL(DRL_ERR_FORMAT, "%s: tensor '%s' has offset %lld and shape [%lld, %lld], which do not follow the "
                    "previous tensor (expected offset %lld)", f->path, names + at, (long long)offsets[i],
                    (long long)shapes[2 * i], (long long)shapes[2 * i + 1], (long long)lay->total);
      goto done;
    }
    DRL_TRY_GOTO(drl_layout_add(lay, names + at, shapes[2 * i], shapes[2 * i + 1], shapes[2 * i + 1] > 1));
    at = end - names + 1;
  }
  if (lay->total != total)
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s: the layout covers %lld parameters but records a total of %lld", f->path,
                  (long long)lay->total, (long long)total);
done:
  free(names);
  free(offsets);
  free(shapes);
  if (st != DRL_OK) drl_layout_free(lay);
  return st;
}

/* Dataset name holds exactly n float32 values. */
static drl_status check_floats(const drl_h5_file *f, const char *name, int64_t n) {
  int64_t found[1];
  DRL_TRY(drl_h5_array_shape(f, name, DRL_H5_FLOAT32, 1, found));
  if (found[0] != n)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s in %s: %lld values, the layout has %lld parameters", name, f->path,
                    (long long)found[0], (long long)n);
  return DRL_OK;
}

/* The run's configuration text, NUL-terminated. */
static drl_status read_config(const drl_h5_file *f, const char *path, drl_checkpoint *ck) {
  void *cfg = NULL;
  int64_t shape[1];
  DRL_TRY(drl_h5_read_array(f, "/config", DRL_H5_UINT8, 1, shape, MAX_CONFIG_BYTES, &cfg));
  ck->config_yaml = (char *)realloc(cfg, (size_t)shape[0] + 1);
  if (!ck->config_yaml) {
    free(cfg);
    return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for the config text", path);
  }
  ck->config_yaml[shape[0]] = '\0';
  return DRL_OK;
}

drl_status drl_checkpoint_read_provenance(const char *path, drl_checkpoint *ck) {
  memset(ck, 0, sizeof *ck);
  drl_h5_file f;
  DRL_TRY(drl_h5_open_read(path, &f));
  int64_t version = 0;
  drl_status st = drl_h5_read_attr_int64(&f, "/", "format_version", &version);
  if (st == DRL_OK && version != DRL_CHECKPOINT_FORMAT_VERSION)
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s: checkpoint format version %lld, this dynrl reads version %d", path,
                  (long long)version, DRL_CHECKPOINT_FORMAT_VERSION);
  if (st == DRL_OK) st = read_hf(&f, ck);
  if (st == DRL_OK) st = read_config(&f, path, ck);
  drl_h5_close(&f);
  if (st != DRL_OK) drl_checkpoint_free(ck);
  return st;
}

drl_status drl_checkpoint_read(const char *path, const drl_layout *expect, drl_checkpoint *ck) {
  memset(ck, 0, sizeof *ck);
  drl_h5_file f;
  DRL_TRY(drl_h5_open_read(path, &f));
  drl_status st = DRL_OK;
  int64_t version = 0;
  DRL_TRY_GOTO(drl_h5_read_attr_int64(&f, "/", "format_version", &version));
  if (version != DRL_CHECKPOINT_FORMAT_VERSION) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s: checkpoint format version %lld, this dynrl reads version %d", path,
                  (long long)version, DRL_CHECKPOINT_FORMAT_VERSION);
    goto done;
  }
  DRL_TRY_GOTO(read_layout(&f, &ck->layout));
  if (expect) {
    st = drl_layout_compare(&ck->layout, expect, path, "the model");
    if (st != DRL_OK) goto done;
  }
  int64_t n = ck->layout.total;
  int64_t pshape[1] = {n};
  /* The extent (and, in h5.c, the storage behind it) before the allocation: the layout's total is only a number. */
  DRL_TRY_GOTO(check_floats(&f, "/model/params", n));
  ck->params = (float *)malloc((size_t)(n ? n : 1) * sizeof(float));
  if (!ck->params) {
    st = drl_fail_context(drl_fail_oom("the checkpoint's parameters", (size_t)n * sizeof(float), "the host"), "%s",
                          path);
    goto done;
  }
  DRL_TRY_GOTO(drl_h5_read_array_into(&f, "/model/params", DRL_H5_FLOAT32, 1, pshape, ck->params));
  int has_optim = 0;
  DRL_TRY_GOTO(drl_h5_exists(&f, "/optim/m", &has_optim));
  if (has_optim) {
    DRL_TRY_GOTO(check_floats(&f, "/optim/m", n));
    DRL_TRY_GOTO(check_floats(&f, "/optim/v", n));
    ck->m = (float *)malloc((size_t)(n ? n : 1) * sizeof(float));
    ck->v = (float *)malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!ck->m || !ck->v) {
      st = drl_fail_context(drl_fail_oom("the checkpoint's AdamW moments", 2 * (size_t)n * sizeof(float), "the host"),
                            "%s", path);
      goto done;
    }
    DRL_TRY_GOTO(drl_h5_read_array_into(&f, "/optim/m", DRL_H5_FLOAT32, 1, pshape, ck->m));
    DRL_TRY_GOTO(drl_h5_read_array_into(&f, "/optim/v", DRL_H5_FLOAT32, 1, pshape, ck->v));
    DRL_TRY_GOTO(drl_h5_read_attr_int64(&f, "/optim", "step", &ck->optim_step));
  }
  int has_bias = 0;
  DRL_TRY_GOTO(drl_h5_exists(&f, "/moe/bias", &has_bias));
  if (has_bias) {
    int64_t bshape[1] = {0};
    void *bias = NULL;
    DRL_TRY_GOTO(drl_h5_read_array(&f, "/moe/bias", DRL_H5_FLOAT32, 1, bshape, (int64_t)1 << 24, &bias));
    ck->moe_bias = (float *)bias;
    ck->moe_bias_n = bshape[0];
  }
  DRL_TRY_GOTO(drl_h5_read_attr_int64(&f, "/trainer", "step", &ck->trainer_step));
  DRL_TRY_GOTO(drl_h5_read_attr_string(&f, "/trainer", "phase", ck->phase, sizeof ck->phase));
  DRL_TRY_GOTO(drl_h5_read_attr_int64(&f, "/trainer", "threads", &ck->threads));
  int has_bad = 0;
  DRL_TRY_GOTO(drl_h5_attr_exists(&f, "/trainer", "bad_steps", &has_bad));
  if (has_bad) DRL_TRY_GOTO(drl_h5_read_attr_int64(&f, "/trainer", "bad_steps", &ck->bad_steps));
  if (has_bad) DRL_TRY_GOTO(drl_h5_read_attr_int64(&f, "/trainer", "bad_streak", &ck->bad_streak));
  int64_t one[1] = {1};
  DRL_TRY_GOTO(drl_h5_read_array_into(&f, "/rng/seed", DRL_H5_UINT64, 1, one, &ck->seed));
  DRL_TRY_GOTO(read_config(&f, path, ck));
  DRL_TRY_GOTO(read_hf(&f, ck));
  if (ck->optim_step < 0 || ck->trainer_step < 0)
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s: negative step counters (optim %lld, trainer %lld)", path,
                  (long long)ck->optim_step, (long long)ck->trainer_step);
done:
  drl_h5_close(&f);
  if (st != DRL_OK) drl_checkpoint_free(ck);
  return st;
}
