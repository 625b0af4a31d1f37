#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5.h"

#define CHUNK_ROWS 256

static void close_all(drl_metrics *m) {
  for (int i = 0; i <= m->count; ++i)
    if (m->sets[i] > 0) H5Dclose(m->sets[i]);
  if (m->file > 0) H5Fclose(m->file);
  m->file = H5I_INVALID_HID;
  for (int i = 0; i <= DRL_METRICS_MAX; ++i) m->sets[i] = H5I_INVALID_HID;
}

/* Creates an empty extendible 1-D dataset. */
static drl_status create_series(drl_metrics *m, const char *name, hid_t type, hid_t *out) {
  hsize_t zero = 0, unlimited = H5S_UNLIMITED, chunk = CHUNK_ROWS;
  hid_t space = H5Screate_simple(1, &zero, &unlimited);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  drl_status st = DRL_OK;
  H5_CHECK_AT_GOTO(space, m->path, name);
  H5_CHECK_AT_GOTO(dcpl, m->path, name);
  H5_CHECK_AT_GOTO(lcpl, m->path, name);
  H5_CHECK_AT_GOTO(H5Pset_chunk(dcpl, 1, &chunk), m->path, name);
  H5_CHECK_AT_GOTO(H5Pset_create_intermediate_group(lcpl, 1), m->path, name);
  *out = H5Dcreate2(m->file, name, type, space, lcpl, dcpl, H5P_DEFAULT);
  H5_CHECK_AT_GOTO(*out, m->path, name);
done:
  if (space > 0) H5Sclose(space);
  if (dcpl > 0) H5Pclose(dcpl);
  if (lcpl > 0) H5Pclose(lcpl);
  return st;
}

static void series_name(const char *metric, char *buf, size_t cap) { snprintf(buf, cap, "/metrics/%s", metric); }

static drl_status create_file(drl_metrics *m) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  drl_status st = DRL_OK;
  H5_CHECK_AT_GOTO(fapl, m->path, NULL);
  /* SWMR needs the latest file format. */
  H5_CHECK_AT_GOTO(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), m->path, NULL);
  m->file = H5Fcreate(m->path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5_CHECK_AT_GOTO(m->file, m->path, NULL);
  DRL_TRY_GOTO(create_series(m, "/metrics/step", H5T_STD_I64LE, &m->sets[0]));
  for (int i = 0; i < m->count; ++i) {
    char name[DRL_METRIC_NAME_CAP + 16];
    series_name(m->names[i], name, sizeof name);
    DRL_TRY_GOTO(create_series(m, name, H5T_IEEE_F64LE, &m->sets[i + 1]));
  }
  m->rows = 0;
done:
  if (fapl > 0) H5Pclose(fapl);
  return st;
}

/* Reopens an existing file with the same metrics and drops rows after resume_step. Returns DRL_ERR_FORMAT when the
 * file does not match, so the caller starts a new one. */
static drl_status reopen_file(drl_metrics *m, int64_t resume_step) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  drl_status st = DRL_OK;
  int64_t *steps = NULL;
  H5_CHECK_AT_GOTO(fapl, m->path, NULL);
  H5_CHECK_AT_GOTO(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), m->path, NULL);
  m->file = H5Fopen(m->path, H5F_ACC_RDWR, fapl);
  H5_CHECK_AT_GOTO(m->file, m->path, NULL);
  for (int i = 0; i <= m->count; ++i) {
    char name[DRL_METRIC_NAME_CAP + 16];
    series_name(i == 0 ? "step" : m->names[i - 1], name, sizeof name);
    if (H5Lexists(m->file, "/metrics", H5P_DEFAULT) <= 0 || H5Lexists(m->file, name, H5P_DEFAULT) <= 0) {
      st = DRL_FAIL(DRL_ERR_FORMAT, "%s has no %s", m->path, name);
      goto done;
    }
    m->sets[i] = H5Dopen2(m->file, name, H5P_DEFAULT);
    H5_CHECK_AT_GOTO(m->sets[i], m->path, name);
  }
  hid_t space = H5Dget_space(m->sets[0]);
  H5_CHECK_AT_GOTO(space, m->path, "/metrics/step");
  hsize_t n = 0;
  int rank = H5Sget_simple_extent_dims(space, &n, NULL);
  H5Sclose(space);
  if (rank != 1) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s: /metrics/step is not 1-D", m->path);
    goto done;
  }
  steps = (int64_t *)malloc((size_t)(n ? n : 1) * sizeof(int64_t));
  if (!steps) {
    st = DRL_FAIL(DRL_ERR_OOM, "out of memory reading %s", m->path);
    goto done;
  }
  if (n) H5_CHECK_AT_GOTO(H5Dread(m->sets[0], H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, steps), m->path,
                          "/metrics/step");
  hsize_t keep = 0;
  while (keep < n && steps[keep] <= resume_step) ++keep;
  for (int i = 0; i <= m->count; ++i) H5_CHECK_AT_GOTO(H5Dset_extent(m->sets[i], &keep), m->path, NULL);
  m->rows = (int64_t)keep;
done:
  free(steps);
  if (fapl > 0) H5Pclose(fapl);
  return st;
}

drl_status drl_metrics_open(drl_metrics *m, const char *path, const char *const *names, int n, int64_t resume_step,
                            int flush_every) {
  memset(m, 0, sizeof *m);
  m->file = H5I_INVALID_HID;
  for (int i = 0; i <= DRL_METRICS_MAX; ++i) m->sets[i] = H5I_INVALID_HID;
  if (n < 0 || n > DRL_METRICS_MAX) return DRL_FAIL(DRL_ERR_INVALID_ARG, "metrics: %d names (at most %d)", n,
                                                    DRL_METRICS_MAX);
  if (snprintf(m->path, sizeof m->path, "%s", path) >= (int)sizeof m->path)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "metrics: path too long");
  for (int i = 0; i < n; ++i) {
    if (strlen(names[i]) == 0 || strlen(names[i]) >= DRL_METRIC_NAME_CAP || strchr(names[i], '/') ||
        strcmp(names[i], "step") == 0)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "metrics: bad metric name '%s'", names[i]);
    snprintf(m->names[i], DRL_METRIC_NAME_CAP, "%s", names[i]);
  }
  m->count = n;
  m->flush_every = flush_every > 0 ? flush_every : 1;
  drl_h5_quiet();
  drl_status st = DRL_ERR_FORMAT;
  FILE *exists = resume_step >= 0 ? fopen(path, "rb") : NULL;
  if (exists) {
    fclose(exists);
    st = reopen_file(m, resume_step);
    if (st != DRL_OK) close_all(m);
  }
  if (st != DRL_OK) st = create_file(m);
  if (st == DRL_OK) {
    herr_t e = H5Fstart_swmr_write(m->file);
    if (e < 0) st = drl_h5_fail(__FILE__, __LINE__, "H5Fstart_swmr_write", m->path, NULL);
  }
  if (st != DRL_OK) close_all(m);
  return st;
}

static drl_status append(drl_metrics *m, hid_t set, hid_t mem_type, const void *value, const char *what) {
  hsize_t size = (hsize_t)m->rows + 1, at = (hsize_t)m->rows, one = 1;
  drl_status st = DRL_OK;
  hid_t file_space = H5I_INVALID_HID, mem_space = H5I_INVALID_HID;
  H5_CHECK_AT_GOTO(H5Dset_extent(set, &size), m->path, what);
  file_space = H5Dget_space(set);
  H5_CHECK_AT_GOTO(file_space, m->path, what);
  H5_CHECK_AT_GOTO(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &at, NULL, &one, NULL), m->path, what);
  mem_space = H5Screate_simple(1, &one, NULL);
  H5_CHECK_AT_GOTO(mem_space, m->path, what);
  H5_CHECK_AT_GOTO(H5Dwrite(set, mem_type, mem_space, file_space, H5P_DEFAULT, value), m->path, what);
done:
  if (file_space > 0) H5Sclose(file_space);
  if (mem_space > 0) H5Sclose(mem_space);
  return st;
}

drl_status drl_metrics_log(drl_metrics *m, int64_t step, const double *values) {
  if (m->file <= 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "metrics: file not open");
  DRL_TRY(append(m, m->sets[0], H5T_NATIVE_INT64, &step, "/metrics/step"));
  for (int i = 0; i < m->count; ++i) DRL_TRY(append(m, m->sets[i + 1], H5T_NATIVE_DOUBLE, &values[i], m->names[i]));
  m->rows++;
  if (++m->unflushed >= m->flush_every) DRL_TRY(drl_metrics_flush(m));
  return DRL_OK;
}

drl_status drl_metrics_flush(drl_metrics *m) {
  if (m->file <= 0) return DRL_OK;
  m->unflushed = 0;
  H5_CHECK_AT(H5Fflush(m->file, H5F_SCOPE_LOCAL), m->path, NULL);
  return DRL_OK;
}

void drl_metrics_close(drl_metrics *m) {
  if (!m || m->file <= 0) return;
  H5Fflush(m->file, H5F_SCOPE_LOCAL);
  close_all(m);
}
