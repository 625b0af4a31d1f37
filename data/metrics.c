#define _POSIX_C_SOURCE 200809L
#include "metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5.h"
#include "kernels/fault.h"

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

/* Creates the file (named file; messages name m->path) with empty series. */
static drl_status create_file(drl_metrics *m, const char *file) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  drl_status st = DRL_OK;
  H5_CHECK_AT_GOTO(fapl, m->path, NULL);
  /* SWMR needs the latest file format. */
  H5_CHECK_AT_GOTO(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), m->path, NULL);
  m->file = H5Fcreate(file, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
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

/* Writes rows [at, at + n) of an extendible series (extending it to at + n rows). */
static drl_status write_rows(drl_metrics *m, hid_t set, hid_t mem_type, hsize_t at, hsize_t n, const void *values,
                             const char *what) {
  hsize_t size = at + n;
  drl_status st = DRL_OK;
  hid_t file_space = H5I_INVALID_HID, mem_space = H5I_INVALID_HID;
  H5_CHECK_AT_GOTO(H5Dset_extent(set, &size), m->path, what);
  if (n == 0) goto done;
  file_space = H5Dget_space(set);
  H5_CHECK_AT_GOTO(file_space, m->path, what);
  H5_CHECK_AT_GOTO(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &at, NULL, &n, NULL), m->path, what);
  mem_space = H5Screate_simple(1, &n, NULL);
  H5_CHECK_AT_GOTO(mem_space, m->path, what);
  H5_CHECK_AT_GOTO(H5Dwrite(set, mem_type, mem_space, file_space, H5P_DEFAULT, values), m->path, what);
done:
  if (file_space > 0) H5Sclose(file_space);
  if (mem_space > 0) H5Sclose(mem_space);
  return st;
}

/* Opens a metrics file for reading, also one whose writer was killed (it stays marked as open for SWMR writing,
 * which only a SWMR reader accepts) or whose last flush failed for want of space: its superblock then records an end
 * of file past the bytes that reached the disk, and HDF5 refuses it as truncated, although the rows flushed before
 * are intact. Zeros appended (sparse, taking no disk space) let HDF5 open it; they are removed again if it still
 * cannot be read (the file is rewritten when it can). */
static hid_t open_rows(const char *path, hid_t fapl) {
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl);
  if (file < 0) file = H5Fopen(path, H5F_ACC_RDONLY, fapl); /* written without SWMR */
  struct stat sb;
  if (file >= 0 || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return file;
  if (truncate(path, sb.st_size + ((off_t)64 << 20)) != 0) return file;
  file = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl);
  if (file < 0 && truncate(path, sb.st_size) != 0) { /* nothing more to do: the error is reported either way */
  }
  return file;
}

/* The rows of an existing metrics file up to resume_step: *keep rows, steps[keep] and values[i * keep + r] of metric
 * i. DRL_ERR_FORMAT when the file lacks one of the names (the caller starts a new file); DRL_ERR_IO when it cannot be
 * read. A writer that was killed leaves the file marked as open for SWMR writing, which only a SWMR reader opens. */
static drl_status read_kept_rows(const drl_metrics *m, int64_t resume_step, hsize_t *keep, int64_t **steps,
                                 double **values) {
  drl_status st = DRL_OK;
  hid_t file = H5I_INVALID_HID, set = H5I_INVALID_HID;
  *keep = 0;
  *steps = NULL;
  *values = NULL;
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5_CHECK_AT_GOTO(fapl, m->path, NULL);
  H5_CHECK_AT_GOTO(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), m->path, NULL);
  file = open_rows(m->path, fapl);
  DRL_H5_CHECK_GOTO_(file, "H5Fopen", m->path, NULL);
  for (int i = 0; i <= m->count; ++i) {
    char name[DRL_METRIC_NAME_CAP + 16];
    series_name(i == 0 ? "step" : m->names[i - 1], name, sizeof name);
    if (H5Lexists(file, "/metrics", H5P_DEFAULT) <= 0 || H5Lexists(file, name, H5P_DEFAULT) <= 0) {
      st = DRL_FAIL(DRL_ERR_FORMAT, "%s has no %s", m->path, name);
      goto done;
    }
    set = H5Dopen2(file, name, H5P_DEFAULT);
    H5_CHECK_AT_GOTO(set, m->path, name);
    hid_t space = H5Dget_space(set);
    H5_CHECK_AT_GOTO(space, m->path, name);
    hsize_t n = 0;
    int rank = H5Sget_simple_extent_dims(space, &n, NULL);
    H5Sclose(space);
    if (rank != 1) {
      st = DRL_FAIL(DRL_ERR_FORMAT, "%s: %s is not 1-D", m->path, name);
      goto done;
    }
    if (i == 0) {
      /* Rows up to resume_step; a killed writer may have extended some series further than others. */
      *steps = (int64_t *)malloc((size_t)(n ? n : 1) * sizeof(int64_t));
      if (!*steps) {
        st = DRL_FAIL(DRL_ERR_OOM, "out of memory reading %s", m->path);
        goto done;
      }
      if (n) H5_CHECK_AT_GOTO(H5Dread(set, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, *steps), m->path, name);
      while (*keep < n && (*steps)[*keep] <= resume_step) ++*keep;
      *values = (double *)malloc((size_t)(*keep ? *keep : 1) * (size_t)(m->count ? m->count : 1) * sizeof(double));
      if (!*values) {
        st = DRL_FAIL(DRL_ERR_OOM, "out of memory reading %s", m->path);
        goto done;
      }
    } else {
      if (n < *keep) *keep = n;
      if (*keep) {
        hid_t fs = H5Dget_space(set);
        H5_CHECK_AT_GOTO(fs, m->path, name);
        hsize_t zero = 0;
        hid_t ms = H5Screate_simple(1, keep, NULL);
        herr_t e = ms < 0 ? -1 : H5Sselect_hyperslab(fs, H5S_SELECT_SET, &zero, NULL, keep, NULL);
        if (e >= 0)
          e = H5Dread(set, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, *values + (size_t)(i - 1) * (size_t)*keep);
        if (ms >= 0) H5Sclose(ms);
        H5Sclose(fs);
        H5_CHECK_AT_GOTO(e, m->path, name);
      }
    }
    H5Dclose(set);
    set = H5I_INVALID_HID;
  }
done:
  if (set > 0) H5Dclose(set);
  if (file > 0) H5Fclose(file);
  if (fapl > 0) H5Pclose(fapl);
  if (st != DRL_OK) {
    free(*steps);
    free(*values);
    *steps = NULL;
    *values = NULL;
  }
  return st;
}

/* Resumes an existing file: its rows up to resume_step go into a new file, written under a temp name and renamed over
 * the old one (a crash meanwhile leaves the old file). The series of different lengths that a killed writer leaves
 * are cut to the shortest. DRL_ERR_FORMAT when the file has other names, so the caller starts a new one. */
static drl_status reopen_file(drl_metrics *m, int64_t resume_step) {
  hsize_t keep = 0;
  int64_t *steps = NULL;
  double *values = NULL;
  drl_status st = read_kept_rows(m, resume_step, &keep, &steps, &values);
  if (st == DRL_ERR_FORMAT) return st;
  if (st != DRL_OK)
    return drl_fail_context(st, "cannot read back the rows of %s to resume it (move it away to start a new one)",
                            m->path);
  char tmp[sizeof m->path + 32];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", m->path, (long)getpid());
  st = create_file(m, tmp);
  if (st == DRL_OK) st = write_rows(m, m->sets[0], H5T_NATIVE_INT64, 0, keep, steps, "/metrics/step");
  for (int i = 0; st == DRL_OK && i < m->count; ++i)
    st = write_rows(m, m->sets[i + 1], H5T_NATIVE_DOUBLE, 0, keep, values + (size_t)i * keep, m->names[i]);
  if (st == DRL_OK && H5Fflush(m->file, H5F_SCOPE_LOCAL) < 0)
    st = drl_h5_fail(__FILE__, __LINE__, "H5Fflush", m->path, NULL);
  if (st == DRL_OK && rename(tmp, m->path) != 0)
    st = DRL_FAIL(DRL_ERR_IO, "%s: rename from %s failed: %s", m->path, tmp, strerror(errno));
  if (st != DRL_OK) {
    close_all(m);
    unlink(tmp);
  }
  m->rows = (int64_t)keep;
  free(steps);
  free(values);
  return st;
}

/* Moves an old file of other names (another dynrl, another policy) to the first free path.old, path.old.1, ...:
 * its rows are the user's, not ours to drop. */
static drl_status keep_aside(drl_metrics *m) {
  char *aside = m->moved_to;
  for (int i = 0; i < 1000; ++i) {
    if (i == 0) snprintf(aside, sizeof m->moved_to, "%s.old", m->path);
    else snprintf(aside, sizeof m->moved_to, "%s.old.%d", m->path, i);
    if (access(aside, F_OK) == 0) continue;
    if (rename(m->path, aside) != 0) {
      drl_status st = DRL_FAIL(DRL_ERR_IO, "%s: cannot move it to %s: %s", m->path, aside, strerror(errno));
      aside[0] = '\0';
      return st;
    }
    return DRL_OK;
  }
  aside[0] = '\0';
  return DRL_FAIL(DRL_ERR_IO, "%s: 1000 old metrics files beside it; remove some", m->path);
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
    if (st != DRL_OK && st != DRL_ERR_FORMAT) return st; /* unreadable: kept for the user to look at */
    if (st == DRL_ERR_FORMAT) DRL_TRY(keep_aside(m));
  }
  if (st != DRL_OK) st = create_file(m, m->path);
  if (st == DRL_OK) {
    herr_t e = H5Fstart_swmr_write(m->file);
    if (e < 0) st = drl_h5_fail(__FILE__, __LINE__, "H5Fstart_swmr_write", m->path, NULL);
  }
  if (st != DRL_OK) close_all(m);
  return st;
}

drl_status drl_metrics_log(drl_metrics *m, int64_t step, const double *values) {
  if (m->file <= 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "metrics: file not open");
  hsize_t at = (hsize_t)m->rows;
  DRL_TRY(write_rows(m, m->sets[0], H5T_NATIVE_INT64, at, 1, &step, "/metrics/step"));
  for (int i = 0; i < m->count; ++i)
    DRL_TRY(write_rows(m, m->sets[i + 1], H5T_NATIVE_DOUBLE, at, 1, &values[i], m->names[i]));
  m->rows++;
  if (++m->unflushed >= m->flush_every) DRL_TRY(drl_metrics_flush(m));
  return DRL_OK;
}

drl_status drl_metrics_flush(drl_metrics *m) {
  if (m->file <= 0) return DRL_OK;
  m->unflushed = 0;
  drl_fault_reach("metrics_flush"); /* where the tests kill a writer (kernels/fault.h) */
  H5_CHECK_AT(H5Fflush(m->file, H5F_SCOPE_LOCAL), m->path, NULL);
  return DRL_OK;
}

void drl_metrics_close(drl_metrics *m) {
  if (!m || m->file <= 0) return;
  H5Fflush(m->file, H5F_SCOPE_LOCAL);
  close_all(m);
}
