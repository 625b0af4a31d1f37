/* HDF5 helpers: the atomic writer and the array and attribute writes (see h5.h for the file format choices). */
#define _POSIX_C_SOURCE 200809L

#include "h5.h"
#include "h5_internal.h"
#include "atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/fault.h"

/* Arrays up to this size live in their (checksummed) object header; larger ones are chunked with Fletcher-32. */
#define COMPACT_MAX_BYTES 4096
/* Chunk size: large enough for full-speed I/O, at most the default 1 MiB chunk cache. */
#define CHUNK_TARGET_BYTES (1u << 20)

/* Removes path's temp files left by writers that no longer run (killed mid-write): each is a whole checkpoint's size,
 * and a run that crashes repeatedly would pile them up. A temp file of a live process is left alone. */
static void remove_dead_temps(const char *path) {
  char dir[DRL_H5_PATH_CAP];
  drl_dir_of(path, dir, sizeof dir);
  const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
  char prefix[DRL_H5_PATH_CAP];
  snprintf(prefix, sizeof prefix, "%s.tmp.", base);
  size_t n = strlen(prefix);
  DIR *d = opendir(dir);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (strncmp(e->d_name, prefix, n) != 0 || !e->d_name[n]) continue;
    char *end = NULL;
    long pid = strtol(e->d_name + n, &end, 10);
    if (*end || pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    char stale[2 * DRL_H5_PATH_CAP + 2];
    snprintf(stale, sizeof stale, "%s/%s", dir, e->d_name);
    unlink(stale);
  }
  closedir(d);
}

drl_status drl_h5_writer_open(drl_h5_writer *w, const char *path) {
  drl_status st = DRL_OK;
  hid_t fapl = H5I_INVALID_HID, fcpl = H5I_INVALID_HID;
  if (!w) return DRL_FAIL(DRL_ERR_INVALID_ARG, "NULL writer");
  memset(w, 0, sizeof *w);
  w->file.id = H5I_INVALID_HID;
  if (!path || !path[0]) return DRL_FAIL(DRL_ERR_INVALID_ARG, "empty output path");
  if (strlen(path) >= DRL_H5_PATH_CAP) return DRL_FAIL(DRL_ERR_INVALID_ARG, "output path too long: %.64s...", path);
  drl_h5_quiet();
  snprintf(w->file.path, sizeof w->file.path, "%s", path);
  snprintf(w->tmp_path, sizeof w->tmp_path, "%s.tmp.%ld", path, (long)getpid());
  /* A stale temp file of ours (pid reuse after a crash) is garbage: start from nothing. */
  if (unlink(w->tmp_path) != 0 && errno != ENOENT) {
    st = DRL_FAIL(DRL_ERR_IO, "%s: cannot remove stale temp file %s: %s", path, w->tmp_path, strerror(errno));
    goto done;
  }
  remove_dead_temps(path);
  H5_CHECK_AT_GOTO(fapl = H5Pcreate(H5P_FILE_ACCESS), path, NULL);
  /* The 1.10 format: checksummed superblock, object headers and chunk indexes. */
  H5_CHECK_AT_GOTO(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110), path, NULL);
  /* Closing the file closes every object still open in it: no handle outlives the file. */
  H5_CHECK_AT_GOTO(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), path, NULL);
  H5_CHECK_AT_GOTO(fcpl = drl_h5_untimed_plist(H5P_FILE_CREATE), path, NULL);
  H5_CHECK_AT_GOTO(w->file.id = H5Fcreate(w->tmp_path, H5F_ACC_TRUNC, fcpl, fapl), path, NULL);
  drl_fault_reach("h5_created");
done:
  if (drl_h5_is_open(fapl)) H5Pclose(fapl);
  if (drl_h5_is_open(fcpl)) H5Pclose(fcpl);
  if (st != DRL_OK) {
    unlink(w->tmp_path);
    memset(w, 0, sizeof *w);
    w->file.id = H5I_INVALID_HID;
  }
  return st;
}


drl_status drl_h5_writer_commit(drl_h5_writer *w) {
  drl_status st = DRL_OK;
  if (!w || !drl_h5_is_open(w->file.id)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "commit of a writer that is not open");
  const char *path = w->file.path;
  /* The named points are where the tests kill a writer (kernels/fault.h). */
  drl_fault_reach("h5_written");
  H5_CHECK_AT_GOTO(H5Fflush(w->file.id, H5F_SCOPE_GLOBAL), path, NULL);
  herr_t rc = H5Fclose(w->file.id);
  w->file.id = H5I_INVALID_HID;
  DRL_H5_CHECK_GOTO_(rc, "H5Fclose", path, NULL);
  drl_fault_reach("h5_closed");
  DRL_TRY_GOTO(drl_fsync_path(path, w->tmp_path, O_RDONLY));
  drl_fault_reach("h5_synced");
  if (rename(w->tmp_path, path) != 0) {
    st = DRL_FAIL(DRL_ERR_IO, "%s: rename from %s failed: %s", path, w->tmp_path, strerror(errno));
    goto done;
  }
  w->tmp_path[0] = '\0'; /* renamed: nothing left to remove */
  drl_fault_reach("h5_renamed");
  char dir[DRL_H5_PATH_CAP];
  drl_dir_of(path, dir, sizeof dir);
  DRL_TRY_GOTO(drl_fsync_path(path, dir, O_RDONLY | O_DIRECTORY));
done:
  drl_h5_writer_abort(w);
  return st;
}

void drl_h5_writer_abort(drl_h5_writer *w) {
  if (!w) return;
  if (drl_h5_is_open(w->file.id)) {
    if (H5Fclose(w->file.id) < 0) H5Eclear2(H5E_DEFAULT);
  }
  if (w->tmp_path[0]) unlink(w->tmp_path);
  memset(w, 0, sizeof *w);
  w->file.id = H5I_INVALID_HID;
}

/* Chunk extent: whole trailing dimensions where they fit, about CHUNK_TARGET_BYTES per chunk. */
static void chunk_dims(int rank, const hsize_t *dims, size_t esize, hsize_t *chunk) {
  hsize_t target = CHUNK_TARGET_BYTES / esize;
  for (int i = 0; i < rank; i++) {
    hsize_t rest = 1;
    for (int j = i + 1; j < rank; j++) rest *= dims[j];
    hsize_t c = target / rest;
    if (c < 1) c = 1;
    if (c > dims[i]) c = dims[i];
    chunk[i] = c;
    /* What is left of the budget goes to the later dimensions. */
    target = target / c;
    if (target < 1) target = 1;
  }
}

drl_status drl_h5_write_array(drl_h5_file *f, const char *name, drl_h5_type type, int rank, const int64_t *shape,
                              const void *data) {
  drl_status st = DRL_OK;
  hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
  DRL_TRY(drl_h5_check_file(f));
  DRL_TRY(drl_h5_check_name(f, name, "dataset"));
  if (!drl_h5_type_valid(type)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: invalid element type %d", name, f->path,
                                         (int)type);
  size_t esize = drl_h5_type_size(type);
  int64_t count = 0;
  DRL_TRY(drl_h5_shape_count(f, name, rank, shape, esize, &count));
  if (count > 0 && !data) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: NULL data", name, f->path);
  hsize_t dims[DRL_H5_MAX_RANK], chunk[DRL_H5_MAX_RANK];
  for (int i = 0; i < rank; i++) dims[i] = (hsize_t)shape[i];

  DRL_TRY_GOTO(drl_h5_make_groups(f, name, 0));
  if (rank == 0) {
    H5_CHECK_AT_GOTO(space = H5Screate(H5S_SCALAR), f->path, name);
  } else {
    H5_CHECK_AT_GOTO(space = H5Screate_simple(rank, dims, NULL), f->path, name);
  }
  H5_CHECK_AT_GOTO(dcpl = drl_h5_untimed_plist(H5P_DATASET_CREATE), f->path, name);
  if ((uint64_t)count * esize <= COMPACT_MAX_BYTES) {
    H5_CHECK_AT_GOTO(H5Pset_layout(dcpl, H5D_COMPACT), f->path, name);
  } else {
    chunk_dims(rank, dims, esize, chunk);
    H5_CHECK_AT_GOTO(H5Pset_chunk(dcpl, rank, chunk), f->path, name);
    H5_CHECK_AT_GOTO(H5Pset_fletcher32(dcpl), f->path, name);
  }
  H5_CHECK_AT_GOTO(dset = H5Dcreate2(f->id, name, drl_h5_file_type(type), space, H5P_DEFAULT, dcpl, H5P_DEFAULT), f->path,
                   name);
  if (count > 0) H5_CHECK_AT_GOTO(H5Dwrite(dset, drl_h5_mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data), f->path, name);
  /* Closing writes the cached chunks: its failure is a write failure. */
  herr_t rc = H5Dclose(dset);
  dset = H5I_INVALID_HID;
  DRL_H5_CHECK_GOTO_(rc, "H5Dclose", f->path, name);
done:
  if (drl_h5_is_open(dset)) H5Dclose(dset);
  if (drl_h5_is_open(dcpl)) H5Pclose(dcpl);
  if (drl_h5_is_open(space)) H5Sclose(space);
  return st;
}

drl_status drl_h5_write_array1d(drl_h5_file *f, const char *name, drl_h5_type type, int64_t n, const void *data) {
  return drl_h5_write_array(f, name, type, 1, &n, data);
}

/* Replaces attribute attr of obj (created as a group when missing) with a scalar of file type ftype. */
static drl_status write_attr(drl_h5_file *f, const char *obj, const char *attr, hid_t ftype, hid_t mtype,
                             const void *value) {
  drl_status st = DRL_OK;
  hid_t o = H5I_INVALID_HID, space = H5I_INVALID_HID, a = H5I_INVALID_HID;
  DRL_TRY(drl_h5_check_file(f));
  DRL_TRY(drl_h5_check_name(f, obj, "object"));
  if (!attr || !attr[0]) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: empty attribute name", obj, f->path);
  int exists = 0;
  DRL_TRY(drl_h5_exists_in(f, obj, &exists));
  if (!exists) DRL_TRY(drl_h5_make_groups(f, obj, 1));
  H5_CHECK_AT_GOTO(o = H5Oopen(f->id, obj, H5P_DEFAULT), f->path, obj);
  htri_t had = H5Aexists(o, attr);
  H5_CHECK_AT_GOTO(had, f->path, obj);
  if (had) H5_CHECK_AT_GOTO(H5Adelete(o, attr), f->path, obj);
  H5_CHECK_AT_GOTO(space = H5Screate(H5S_SCALAR), f->path, obj);
  H5_CHECK_AT_GOTO(a = H5Acreate2(o, attr, ftype, space, H5P_DEFAULT, H5P_DEFAULT), f->path, obj);
  H5_CHECK_AT_GOTO(H5Awrite(a, mtype, value), f->path, obj);
  herr_t rc = H5Aclose(a);
  a = H5I_INVALID_HID;
  DRL_H5_CHECK_GOTO_(rc, "H5Aclose", f->path, obj);
done:
  if (drl_h5_is_open(a)) H5Aclose(a);
  if (drl_h5_is_open(space)) H5Sclose(space);
  if (drl_h5_is_open(o)) H5Oclose(o);
  return st;
}

drl_status drl_h5_write_attr_string(drl_h5_file *f, const char *obj, const char *attr, const char *value) {
  drl_status st = DRL_OK;
  hid_t t = H5I_INVALID_HID;
  DRL_TRY(drl_h5_check_file(f));
  if (!value) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: NULL value for attribute %s", f->path, attr ? attr : "?");
  /* Fixed length (stored inside the checksummed object header), NUL-terminated, so "" is one byte. */
  H5_CHECK_AT_GOTO(t = H5Tcopy(H5T_C_S1), f->path, obj);
  H5_CHECK_AT_GOTO(H5Tset_size(t, strlen(value) + 1), f->path, obj);
  H5_CHECK_AT_GOTO(H5Tset_strpad(t, H5T_STR_NULLTERM), f->path, obj);
  H5_CHECK_AT_GOTO(H5Tset_cset(t, H5T_CSET_ASCII), f->path, obj);
  st = write_attr(f, obj, attr, t, t, value);
done:
  if (drl_h5_is_open(t)) H5Tclose(t);
  return st;
}

drl_status drl_h5_write_attr_int64(drl_h5_file *f, const char *obj, const char *attr, int64_t value) {
  return write_attr(f, obj, attr, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

drl_status drl_h5_write_attr_double(drl_h5_file *f, const char *obj, const char *attr, double value) {
  return write_attr(f, obj, attr, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}
