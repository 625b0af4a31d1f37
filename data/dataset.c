/* Dataset files (DESIGN §9): /prompts and optional /answers as tokens + offsets, vocab/task/format_version on the
 * root. The reader checks each size against the next before it allocates or indexes anything. */
#define _POSIX_C_SOURCE 200809L
#include "dataset.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5.h"

/* drl_token_seqs_alloc / drl_token_seqs_free live in token_seqs.c. */

void drl_dataset_free(drl_dataset *ds) {
  if (!ds) return;
  drl_token_seqs_free(&ds->prompts);
  drl_token_seqs_free(&ds->answers);
  free(ds->answer_text);
  free(ds->answer_text_offsets);
  memset(ds, 0, sizeof *ds);
}

int drl_dataset_is_text(const drl_dataset *ds) { return strcmp(ds->task, DRL_TEXT_TASK) == 0; }

/* ---- validation, shared by the in-memory check and the reader (where names the array in messages) ---- */

/* offsets[0] == 0 and non-decreasing over n + 1 entries. */
static drl_status check_offsets(const int64_t *offsets, int64_t n, const char *where) {
  if (n < 0) return DRL_FAIL(DRL_ERR_FORMAT, "%s: negative sequence count %lld", where, (long long)n);
  if (!offsets) return DRL_FAIL(DRL_ERR_FORMAT, "%s: missing (NULL)", where);
  if (offsets[0] != 0)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: offsets[0] = %lld, expected 0", where, (long long)offsets[0]);
  for (int64_t i = 0; i < n; i++) {
    if (offsets[i + 1] < offsets[i])
      return DRL_FAIL(DRL_ERR_FORMAT, "%s: offsets[%lld] = %lld is less than offsets[%lld] = %lld (offsets must be "
                      "non-decreasing)", where, (long long)(i + 1), (long long)offsets[i + 1], (long long)i,
                      (long long)offsets[i]);
  }
  if (offsets[n] > DRL_DATASET_MAX_TOKENS)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: %lld tokens exceed the limit of %lld", where, (long long)offsets[n],
                    (long long)DRL_DATASET_MAX_TOKENS);
  return DRL_OK;
}

/* Every token of every sequence inside [0, vocab_size). Offsets must have passed check_offsets. */
static drl_status check_tokens(const int32_t *tokens, const int64_t *offsets, int64_t n, int vocab_size,
                               const char *where) {
  if (offsets[n] > 0 && !tokens) return DRL_FAIL(DRL_ERR_FORMAT, "%s: missing (NULL)", where);
  for (int64_t s = 0; s < n; s++) {
    for (int64_t j = offsets[s]; j < offsets[s + 1]; j++) {
      if (tokens[j] < 0 || tokens[j] >= vocab_size)
        return DRL_FAIL(DRL_ERR_FORMAT, "%s: token %d at position %lld (sequence %lld) is outside the vocabulary "
                        "[0, %d)", where, (int)tokens[j], (long long)j, (long long)s, vocab_size);
    }
  }
  return DRL_OK;
}

/* vocab: NUL-terminated inside its buffer, non-empty, every character distinct. Sets *size to its length. */
static drl_status check_vocab(const char *vocab, const char *where, int *size) {
  const char *end = (const char *)memchr(vocab, '\0', DRL_VOCAB_CAP);
  if (!end) return DRL_FAIL(DRL_ERR_FORMAT, "%s: vocab is not NUL-terminated within %d bytes", where, DRL_VOCAB_CAP);
  int len = (int)(end - vocab);
  if (len == 0) return DRL_FAIL(DRL_ERR_FORMAT, "%s: vocab is empty", where);
  int first_at[256];
  for (int c = 0; c < 256; c++) first_at[c] = -1;
  for (int i = 0; i < len; i++) {
    unsigned char c = (unsigned char)vocab[i];
    if (first_at[c] >= 0)
      return DRL_FAIL(DRL_ERR_FORMAT, "%s: vocab repeats character '%c' (0x%02x) at ids %d and %d", where,
                      (c >= 32 && c < 127) ? c : '?', c, first_at[c], i);
    first_at[c] = i;
  }
  *size = len;
  return DRL_OK;
}

static drl_status check_task(const char *task, const char *where) {
  if (!memchr(task, '\0', DRL_TASK_NAME_CAP))
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: task is not NUL-terminated within %d bytes", where, DRL_TASK_NAME_CAP);
  if (!task[0]) return DRL_FAIL(DRL_ERR_FORMAT, "%s: task is empty", where);
  return DRL_OK;
}

static int answers_absent(const drl_token_seqs *a) { return !a->offsets && !a->tokens && a->n == 0; }

/* The id range of ds: a character vocabulary's length, or a text set's vocab_size (its vocab must be ""). */
static drl_status id_range(const drl_dataset *ds, const char *where, int *size) {
  if (!drl_dataset_is_text(ds)) return check_vocab(ds->vocab, where, size);
  if (!memchr(ds->vocab, '\0', DRL_VOCAB_CAP) || ds->vocab[0])
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: a text prompt set has no character vocabulary (vocab must be \"\")", where);
  if (ds->vocab_size < 1) return DRL_FAIL(DRL_ERR_FORMAT, "%s: vocab_size %d must be >= 1", where, (int)ds->vocab_size);
  *size = ds->vocab_size;
  return DRL_OK;
}

/* A text set's answers as text and identity: offsets tiling the text, a 16-hex-digit tokenizer hash, a template. */
static drl_status check_text(const drl_dataset *ds, const char *where) {
  if (!drl_dataset_is_text(ds)) {
    if (ds->answer_text || ds->answer_text_offsets)
      return DRL_FAIL(DRL_ERR_FORMAT, "%s: answers as text belong to a text prompt set (task \"%s\")", where,
                      ds->task);
    return DRL_OK;
  }
  if (!ds->answer_text_offsets || !ds->answer_text)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: a text prompt set needs its answers as text", where);
  char w[DRL_H5_PATH_CAP + 64];
  snprintf(w, sizeof w, "%s: answer text offsets", where);
  DRL_TRY(check_offsets(ds->answer_text_offsets, ds->prompts.n, w));
  size_t hl = strnlen(ds->tokenizer_hash, sizeof ds->tokenizer_hash);
  if (hl != 16 || strspn(ds->tokenizer_hash, "0123456789abcdef") != 16)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: tokenizer_hash must be 16 lowercase hex digits", where);
  if (!memchr(ds->template_name, '\0', sizeof ds->template_name) || !ds->template_name[0])
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: a text prompt set names its chat template", where);
  return DRL_OK;
}

drl_status drl_dataset_validate(const drl_dataset *ds) {
  if (!ds) return DRL_FAIL(DRL_ERR_INVALID_ARG, "NULL dataset");
  int vocab_size = 0;
  DRL_TRY(check_task(ds->task, "dataset"));
  DRL_TRY(id_range(ds, "dataset", &vocab_size));
  DRL_TRY(check_text(ds, "dataset"));
  DRL_TRY(check_offsets(ds->prompts.offsets, ds->prompts.n, "prompts offsets"));
  DRL_TRY(check_tokens(ds->prompts.tokens, ds->prompts.offsets, ds->prompts.n, vocab_size, "prompts tokens"));
  if (answers_absent(&ds->answers)) return DRL_OK;
  if (ds->answers.n != ds->prompts.n)
    return DRL_FAIL(DRL_ERR_FORMAT, "answers: %lld sequences but %lld prompts (each prompt needs one answer)",
                    (long long)ds->answers.n, (long long)ds->prompts.n);
  DRL_TRY(check_offsets(ds->answers.offsets, ds->answers.n, "answers offsets"));
  DRL_TRY(check_tokens(ds->answers.tokens, ds->answers.offsets, ds->answers.n, vocab_size, "answers tokens"));
  return DRL_OK;
}

/* ---- writing ---- */

static drl_status write_seqs(drl_h5_file *f, const char *group, const drl_token_seqs *s) {
  char name[64];
  snprintf(name, sizeof name, "/%s/tokens", group);
  DRL_TRY(drl_h5_write_array1d(f, name, DRL_H5_INT32, s->offsets[s->n], s->tokens));
  snprintf(name, sizeof name, "/%s/offsets", group);
  return drl_h5_write_array1d(f, name, DRL_H5_INT64, s->n + 1, s->offsets);
}

drl_status drl_dataset_write(const char *path, const drl_dataset *ds) {
  drl_status st = DRL_OK;
  drl_h5_writer w;
  memset(&w, 0, sizeof w);
  if (!path) return DRL_FAIL(DRL_ERR_INVALID_ARG, "NULL dataset path");
  st = drl_dataset_validate(ds);
  if (st != DRL_OK) return drl_fail_context(st, "refusing to write invalid dataset %s", path);
  DRL_TRY(drl_h5_writer_open(&w, path));
  DRL_TRY_GOTO(drl_h5_write_attr_int64(&w.file, "/", "format_version", DRL_DATASET_FORMAT_VERSION));
  DRL_TRY_GOTO(drl_h5_write_attr_string(&w.file, "/", "vocab", ds->vocab));
  DRL_TRY_GOTO(drl_h5_write_attr_string(&w.file, "/", "task", ds->task));
  DRL_TRY_GOTO(write_seqs(&w.file, "prompts", &ds->prompts));
  if (!answers_absent(&ds->answers)) DRL_TRY_GOTO(write_seqs(&w.file, "answers", &ds->answers));
  if (drl_dataset_is_text(ds)) {
    DRL_TRY_GOTO(drl_h5_write_attr_int64(&w.file, "/", "vocab_size", ds->vocab_size));
    DRL_TRY_GOTO(drl_h5_write_attr_string(&w.file, "/", "tokenizer_hash", ds->tokenizer_hash));
    DRL_TRY_GOTO(drl_h5_write_attr_string(&w.file, "/", "template", ds->template_name));
    int64_t n = ds->prompts.n;
    DRL_TRY_GOTO(drl_h5_write_array1d(&w.file, "/answer_text/bytes", DRL_H5_UINT8, ds->answer_text_offsets[n],
                                      ds->answer_text));
    DRL_TRY_GOTO(drl_h5_write_array1d(&w.file, "/answer_text/offsets", DRL_H5_INT64, n + 1,
                                      ds->answer_text_offsets));
  }
  st = drl_h5_writer_commit(&w);
done:
  if (st != DRL_OK) drl_h5_writer_abort(&w);
  return st;
}

/* ---- reading ---- */

/* Reads /<group>/offsets, checks them, checks /<group>/tokens holds exactly offsets[n] tokens, then reads and
 * checks those. On failure out is freed and zeroed. */
static drl_status read_seqs(const drl_h5_file *f, const char *group, int vocab_size, drl_token_seqs *out) {
  drl_status st = DRL_OK;
  char on[64], tn[64], where[DRL_H5_PATH_CAP + 80];
  int64_t shape[1] = {0};
  void *buf = NULL;
  memset(out, 0, sizeof *out);
  snprintf(on, sizeof on, "/%s/offsets", group);
  snprintf(tn, sizeof tn, "/%s/tokens", group);

  DRL_TRY_GOTO(drl_h5_read_array(f, on, DRL_H5_INT64, 1, shape, DRL_DATASET_MAX_SEQS + 1, &buf));
  out->offsets = (int64_t *)buf;
  buf = NULL;
  snprintf(where, sizeof where, "%s in %s", on, f->path);
  if (shape[0] < 1) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s: no entries (expected n + 1 >= 1)", where);
    goto done;
  }
  out->n = shape[0] - 1;
  DRL_TRY_GOTO(check_offsets(out->offsets, out->n, where));

  int64_t n_tokens = out->offsets[out->n];
  DRL_TRY_GOTO(drl_h5_array_shape(f, tn, DRL_H5_INT32, 1, shape));
  if (shape[0] != n_tokens) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s: offsets end at %lld but %s has %lld tokens", where, (long long)n_tokens, tn,
                  (long long)shape[0]);
    goto done;
  }
  DRL_TRY_GOTO(drl_h5_read_array(f, tn, DRL_H5_INT32, 1, shape, n_tokens, &buf));
  out->tokens = (int32_t *)buf;
  buf = NULL;
  snprintf(where, sizeof where, "%s in %s", tn, f->path);
  DRL_TRY_GOTO(check_tokens(out->tokens, out->offsets, out->n, vocab_size, where));
done:
  free(buf);
  if (st != DRL_OK) drl_token_seqs_free(out);
  return st;
}

/* A text set's root attributes: its id range, tokenizer and template. */
static drl_status read_text_identity(const drl_h5_file *f, drl_dataset *ds) {
  int64_t size = 0;
  DRL_TRY(drl_h5_read_attr_int64(f, "/", "vocab_size", &size));
  if (size < 1 || size > INT32_MAX)
    return DRL_FAIL(DRL_ERR_FORMAT, "/ in %s: vocab_size %lld outside [1, 2^31)", f->path, (long long)size);
  ds->vocab_size = (int32_t)size;
  DRL_TRY(drl_h5_read_attr_string(f, "/", "tokenizer_hash", ds->tokenizer_hash, sizeof ds->tokenizer_hash));
  return drl_h5_read_attr_string(f, "/", "template", ds->template_name, sizeof ds->template_name);
}

/* A text set's /answer_text: offsets (one more than the prompts), then exactly the bytes they end at. */
static drl_status read_answer_text(const drl_h5_file *f, drl_dataset *ds) {
  int64_t shape[1] = {0};
  void *buf = NULL;
  DRL_TRY(drl_h5_read_array(f, "/answer_text/offsets", DRL_H5_INT64, 1, shape, DRL_DATASET_MAX_SEQS + 1, &buf));
  ds->answer_text_offsets = (int64_t *)buf;
  if (shape[0] != ds->prompts.n + 1)
    return DRL_FAIL(DRL_ERR_FORMAT, "/answer_text/offsets in %s: %lld entries for %lld prompts", f->path,
                    (long long)shape[0], (long long)ds->prompts.n);
  char where[DRL_H5_PATH_CAP + 40];
  snprintf(where, sizeof where, "/answer_text/offsets in %s", f->path);
  DRL_TRY(check_offsets(ds->answer_text_offsets, ds->prompts.n, where));
  int64_t n = ds->answer_text_offsets[ds->prompts.n];
  DRL_TRY(drl_h5_array_shape(f, "/answer_text/bytes", DRL_H5_UINT8, 1, shape));
  if (shape[0] != n)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: offsets end at %lld but /answer_text/bytes holds %lld", where, (long long)n,
                    (long long)shape[0]);
  DRL_TRY(drl_h5_read_array(f, "/answer_text/bytes", DRL_H5_UINT8, 1, shape, n, &buf));
  ds->answer_text = (char *)buf;
  return DRL_OK;
}

drl_status drl_dataset_read(const char *path, drl_dataset *ds) {
  drl_status st = DRL_OK;
  drl_h5_file f;
  memset(&f, 0, sizeof f);
  if (!ds) return DRL_FAIL(DRL_ERR_INVALID_ARG, "NULL dataset");
  memset(ds, 0, sizeof *ds);
  DRL_TRY_GOTO(drl_h5_open_read(path, &f));

  int64_t version = 0;
  DRL_TRY_GOTO(drl_h5_read_attr_int64(&f, "/", "format_version", &version));
  if (version != DRL_DATASET_FORMAT_VERSION) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s: dataset format_version %lld found, this build reads format_version %d (%s)",
                  path, (long long)version, DRL_DATASET_FORMAT_VERSION,
                  version > DRL_DATASET_FORMAT_VERSION ? "written by a newer dynrl" : "an older or invalid format");
    goto done;
  }
  DRL_TRY_GOTO(drl_h5_read_attr_string(&f, "/", "vocab", ds->vocab, sizeof ds->vocab));
  DRL_TRY_GOTO(drl_h5_read_attr_string(&f, "/", "task", ds->task, sizeof ds->task));
  char where[DRL_H5_PATH_CAP + 16];
  snprintf(where, sizeof where, "/ in %s", path);
  int vocab_size = 0;
  DRL_TRY_GOTO(check_task(ds->task, where));
  if (drl_dataset_is_text(ds)) DRL_TRY_GOTO(read_text_identity(&f, ds));
  DRL_TRY_GOTO(id_range(ds, where, &vocab_size));

  DRL_TRY_GOTO(read_seqs(&f, "prompts", vocab_size, &ds->prompts));
  int has_answers = 0;
  DRL_TRY_GOTO(drl_h5_exists(&f, "/answers", &has_answers));
  if (has_answers) {
    DRL_TRY_GOTO(read_seqs(&f, "answers", vocab_size, &ds->answers));
    if (ds->answers.n != ds->prompts.n) {
      st = DRL_FAIL(DRL_ERR_FORMAT, "/answers in %s: %lld answers but %lld prompts", path,
                    (long long)ds->answers.n, (long long)ds->prompts.n);
      goto done;
    }
  }
  if (drl_dataset_is_text(ds)) DRL_TRY_GOTO(read_answer_text(&f, ds));
  ds->format_version = (int32_t)version;
  /* Everything was checked piecewise above; the whole-dataset check keeps reader and writer in agreement. */
  st = drl_dataset_validate(ds);
  if (st != DRL_OK) drl_fail_context(st, "%s", path);
done:
  drl_h5_close(&f);
  if (st != DRL_OK) drl_dataset_free(ds);
  return st;
}
