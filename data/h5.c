/* HDF5 helpers: checked calls, types, argument checks and a validating reader (see h5.h for the file format choices;
 * the writer is h5_write.c). */
#define _POSIX_C_SOURCE 200809L

#include "h5.h"
#include "h5_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fixed-length string attribute longer than this is taken as corruption, not as data. */
#define STRING_ATTR_MAX_BYTES (1u << 20)

/* ---- errors ---- */

typedef struct innermost_error {
  int found;
  char desc[512];
  char minor[160];
} innermost_error;

/* H5Ewalk2 callback: with H5E_WALK_UPWARD entry 0 is the innermost (most specific) error. */
static herr_t take_innermost(unsigned n, const H5E_error2_t *e, void *data) {
  innermost_error *in = (innermost_error *)data;
  if (n != 0) return 0;
  in->found = 1;
  snprintf(in->desc, sizeof in->desc, "%s", e->desc ? e->desc : "");
  if (H5Eget_msg(e->min_num, NULL, in->minor, sizeof in->minor) < 0) in->minor[0] = '\0';
  return 0;
}

drl_status drl_h5_fail(const char *file, int line, const char *call, const char *path, const char *obj) {
  innermost_error in;
  memset(&in, 0, sizeof in);
  if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, &in) < 0) in.found = 0;
  H5Eclear2(H5E_DEFAULT);
  char msg[sizeof in.desc + sizeof in.minor + 8];
  /* A failed system call: HDF5's text lists the time, descriptor, buffer and sizes; the errno text is what says why. */
  const char *sys = strstr(in.desc, "error message = '");
  if (in.found && sys) {
    char what[200], why[200];
    snprintf(what, sizeof what, "%.*s", (int)strcspn(in.desc, ":,"), in.desc);
    sys += strlen("error message = '");
    snprintf(why, sizeof why, "%.*s", (int)strcspn(sys, "'"), sys);
    snprintf(in.desc, sizeof in.desc, "%s: %s", what, why);
  }
  if (!in.found)
    snprintf(msg, sizeof msg, "no HDF5 error message");
  else if (in.desc[0] && in.minor[0] && strcmp(in.desc, in.minor) != 0)
    snprintf(msg, sizeof msg, "%s (%s)", in.desc, in.minor);
  else
    snprintf(msg, sizeof msg, "%s", in.desc[0] ? in.desc : in.minor);
  if (path && obj) return drl_fail(DRL_ERR_IO, file, line, "%s in %s: %s failed: %s", obj, path, call, msg);
  if (path) return drl_fail(DRL_ERR_IO, file, line, "%s: %s failed: %s", path, call, msg);
  return drl_fail(DRL_ERR_IO, file, line, "%s failed: %s", call, msg);
}

void drl_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

void drl_h5_no_exit_cleanup(void) { H5dont_atexit(); }

/* ---- types ---- */

int drl_h5_type_valid(drl_h5_type t) { return t >= DRL_H5_INT32 && t <= DRL_H5_FLOAT64; }

const char *drl_h5_type_name(drl_h5_type t) {
  switch (t) {
    case DRL_H5_INT32: return "int32";
    case DRL_H5_INT64: return "int64";
    case DRL_H5_UINT8: return "uint8";
    case DRL_H5_UINT64: return "uint64";
    case DRL_H5_FLOAT32: return "float32";
    case DRL_H5_FLOAT64: return "float64";
  }
  return "invalid type";
}

size_t drl_h5_type_size(drl_h5_type t) {
  switch (t) {
    case DRL_H5_INT32: return 4;
    case DRL_H5_INT64: return 8;
    case DRL_H5_UINT8: return 1;
    case DRL_H5_UINT64: return 8;
    case DRL_H5_FLOAT32: return 4;
    case DRL_H5_FLOAT64: return 8;
  }
  return 0;
}

hid_t drl_h5_file_type(drl_h5_type t) {
  switch (t) {
    case DRL_H5_INT32: return H5T_STD_I32LE;
    case DRL_H5_INT64: return H5T_STD_I64LE;
    case DRL_H5_UINT8: return H5T_STD_U8LE;
    case DRL_H5_UINT64: return H5T_STD_U64LE;
    case DRL_H5_FLOAT32: return H5T_IEEE_F32LE;
    case DRL_H5_FLOAT64: return H5T_IEEE_F64LE;
  }
  return H5I_INVALID_HID;
}

hid_t drl_h5_mem_type(drl_h5_type t) {
  switch (t) {
    case DRL_H5_INT32: return H5T_NATIVE_INT32;
    case DRL_H5_INT64: return H5T_NATIVE_INT64;
    case DRL_H5_UINT8: return H5T_NATIVE_UINT8;
    case DRL_H5_UINT64: return H5T_NATIVE_UINT64;
    case DRL_H5_FLOAT32: return H5T_NATIVE_FLOAT;
    case DRL_H5_FLOAT64: return H5T_NATIVE_DOUBLE;
  }
  return H5I_INVALID_HID;
}

/* Describes a file datatype for messages: "int64", "uint8", "float32", "string", "compound", ... */
static void describe_type(hid_t tid, char *buf, size_t cap) {
  H5T_class_t cls = H5Tget_class(tid);
  size_t bits = H5Tget_size(tid) * 8;
  switch (cls) {
    case H5T_INTEGER:
      snprintf(buf, cap, "%sint%zu", H5Tget_sign(tid) == H5T_SGN_NONE ? "u" : "", bits);
      break;
    case H5T_FLOAT: snprintf(buf, cap, "float%zu", bits); break;
    case H5T_STRING: snprintf(buf, cap, "string"); break;
    case H5T_COMPOUND: snprintf(buf, cap, "compound"); break;
    case H5T_ENUM: snprintf(buf, cap, "enum"); break;
    case H5T_ARRAY: snprintf(buf, cap, "array type"); break;
    case H5T_VLEN: snprintf(buf, cap, "variable-length sequence"); break;
    case H5T_OPAQUE: snprintf(buf, cap, "opaque"); break;
    case H5T_BITFIELD: snprintf(buf, cap, "bitfield"); break;
    case H5T_REFERENCE: snprintf(buf, cap, "reference"); break;
    case H5T_TIME: snprintf(buf, cap, "time"); break;
    default: snprintf(buf, cap, "unknown type"); break;
  }
  H5Eclear2(H5E_DEFAULT);
}

/* Whether file datatype tid holds elements of t exactly: same class, size and signedness. */
static int type_matches(hid_t tid, drl_h5_type t) {
  H5T_class_t cls = H5Tget_class(tid);
  size_t size = H5Tget_size(tid);
  if (size != drl_h5_type_size(t)) return 0;
  switch (t) {
    case DRL_H5_INT32:
    case DRL_H5_INT64: return cls == H5T_INTEGER && H5Tget_sign(tid) == H5T_SGN_2;
    case DRL_H5_UINT8:
    case DRL_H5_UINT64: return cls == H5T_INTEGER && H5Tget_sign(tid) == H5T_SGN_NONE;
    case DRL_H5_FLOAT32:
    case DRL_H5_FLOAT64: return cls == H5T_FLOAT;
  }
  return 0;
}

/* ---- argument checks ---- */

drl_status drl_h5_check_file(const drl_h5_file *f) {
  if (!f || !drl_h5_is_open(f->id)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "HDF5 file is not open");
  return DRL_OK;
}

drl_status drl_h5_check_name(const drl_h5_file *f, const char *name, const char *what) {
  if (!name || !name[0]) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: empty %s name", f->path, what);
  size_t len = strlen(name);
  if (len >= DRL_H5_PATH_CAP) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: %s name too long", f->path, what);
  if (strcmp(name, "/") == 0) return DRL_OK;
  if (strstr(name, "//") || name[len - 1] == '/')
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: malformed %s name '%s'", f->path, what, name);
  return DRL_OK;
}

drl_status drl_h5_shape_count(const drl_h5_file *f, const char *name, int rank, const int64_t *shape, size_t esize,
                              int64_t *count) {
  if (rank < 0 || rank > DRL_H5_MAX_RANK)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: rank %d outside [0, %d]", name, f->path, rank, DRL_H5_MAX_RANK);
  if (rank > 0 && !shape) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: NULL shape", name, f->path);
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (shape[i] < 0)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: negative dimension %d (%lld)", name, f->path, i,
                      (long long)shape[i]);
    if (shape[i] > 0 && n > (INT64_MAX / (int64_t)esize) / shape[i])
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: shape too large", name, f->path);
    n *= shape[i];
  }
  *count = n;
  return DRL_OK;
}

/* ---- objects ---- */

drl_status drl_h5_exists_in(const drl_h5_file *f, const char *name, int *exists) {
  *exists = 0;
  if (strcmp(name, "/") == 0) {
    *exists = 1;
    return DRL_OK;
  }
  char buf[DRL_H5_PATH_CAP];
  snprintf(buf, sizeof buf, "%s", name);
  /* H5Lexists needs every intermediate link to exist, so check each prefix in turn. */
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    htri_t e = H5Lexists(f->id, buf, H5P_DEFAULT);
    *p = '/';
    if (e < 0) return drl_h5_fail(__FILE__, __LINE__, "H5Lexists(file, prefix)", f->path, name);
    if (e == 0) return DRL_OK;
  }
  htri_t e = H5Lexists(f->id, buf, H5P_DEFAULT);
  if (e < 0) return drl_h5_fail(__FILE__, __LINE__, "H5Lexists(file, name)", f->path, name);
  if (e == 0) return DRL_OK;
  /* A dangling soft link exists as a link but names no object. */
  e = H5Oexists_by_name(f->id, buf, H5P_DEFAULT);
  if (e < 0) return drl_h5_fail(__FILE__, __LINE__, "H5Oexists_by_name(file, name)", f->path, name);
  *exists = e > 0;
  return DRL_OK;
}

drl_status drl_h5_exists(const drl_h5_file *f, const char *name, int *exists) {
  DRL_TRY(drl_h5_check_file(f));
  DRL_TRY(drl_h5_check_name(f, name, "object"));
  if (!exists) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: NULL exists", f->path);
  return drl_h5_exists_in(f, name, exists);
}

hid_t drl_h5_untimed_plist(hid_t cls) {
  hid_t p = H5Pcreate(cls);
  if (p < 0) return p;
  if (H5Pset_obj_track_times(p, 0) < 0) {
    H5Pclose(p);
    return H5I_INVALID_HID;
  }
  return p;
}

drl_status drl_h5_make_groups(drl_h5_file *f, const char *name, int include_last) {
  drl_status st = DRL_OK;
  hid_t gcpl = H5I_INVALID_HID, g = H5I_INVALID_HID;
  char buf[DRL_H5_PATH_CAP];
  snprintf(buf, sizeof buf, "%s", name);
  size_t len = strlen(buf);
  H5_CHECK_AT_GOTO(gcpl = drl_h5_untimed_plist(H5P_GROUP_CREATE), f->path, name);
  for (size_t i = 1; i <= len; i++) {
    if (i < len && buf[i] != '/') continue;
    if (i == len && !include_last) break;
    char saved = buf[i];
    buf[i] = '\0';
    int exists = 0;
    st = drl_h5_exists_in(f, buf, &exists);
    if (st == DRL_OK && !exists) {
      g = H5Gcreate2(f->id, buf, H5P_DEFAULT, gcpl, H5P_DEFAULT);
      if (g < 0) st = drl_h5_fail(__FILE__, __LINE__, "H5Gcreate2(file, group)", f->path, buf);
      else H5Gclose(g);
      g = H5I_INVALID_HID;
    }
    buf[i] = saved;
    if (st != DRL_OK) goto done;
  }
done:
  if (drl_h5_is_open(gcpl)) H5Pclose(gcpl);
  return st;
}

/* ---- reading ---- */

drl_status drl_h5_open_read(const char *path, drl_h5_file *f) {
  drl_status st = DRL_OK;
  hid_t fapl = H5I_INVALID_HID;
  if (!f) return DRL_FAIL(DRL_ERR_INVALID_ARG, "NULL file");
  memset(f, 0, sizeof *f);
  f->id = H5I_INVALID_HID;
  if (!path || !path[0]) return DRL_FAIL(DRL_ERR_INVALID_ARG, "empty input path");
  if (strlen(path) >= DRL_H5_PATH_CAP) return DRL_FAIL(DRL_ERR_INVALID_ARG, "input path too long: %.64s...", path);
  drl_h5_quiet();
  /* Plain errors first: HDF5's message for a missing file is long and buried. */
  struct stat sb;
  if (stat(path, &sb) != 0) return DRL_FAIL(DRL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  if (!S_ISREG(sb.st_mode)) return DRL_FAIL(DRL_ERR_IO, "cannot open %s: not a regular file", path);
  if (access(path, R_OK) != 0) return DRL_FAIL(DRL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  htri_t is_h5 = H5Fis_hdf5(path);
  if (is_h5 < 0) return drl_h5_fail(__FILE__, __LINE__, "H5Fis_hdf5(path)", path, NULL);
  if (is_h5 == 0)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s is not an HDF5 file (no HDF5 signature; %lld bytes)", path,
                    (long long)sb.st_size);
  H5_CHECK_AT_GOTO(fapl = H5Pcreate(H5P_FILE_ACCESS), path, NULL);
  H5_CHECK_AT_GOTO(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), path, NULL);
  snprintf(f->path, sizeof f->path, "%s", path);
  H5_CHECK_AT_GOTO(f->id = H5Fopen(path, H5F_ACC_RDONLY, fapl), path, NULL);
done:
  if (drl_h5_is_open(fapl)) H5Pclose(fapl);
  if (st != DRL_OK) {
    memset(f, 0, sizeof *f);
    f->id = H5I_INVALID_HID;
  }
  return st;
}

void drl_h5_close(drl_h5_file *f) {
  if (!f) return;
  if (drl_h5_is_open(f->id) && H5Fclose(f->id) < 0) H5Eclear2(H5E_DEFAULT);
  f->id = H5I_INVALID_HID;
}

/* Opens dataset name after checking it exists (so "not found" is a plain message). */
static drl_status open_dataset(const drl_h5_file *f, const char *name, hid_t *dset) {
  *dset = H5I_INVALID_HID;
  DRL_TRY(drl_h5_check_file(f));
  DRL_TRY(drl_h5_check_name(f, name, "dataset"));
  int exists = 0;
  DRL_TRY(drl_h5_exists_in(f, name, &exists));
  if (!exists) return DRL_FAIL(DRL_ERR_FORMAT, "%s in %s: not found", name, f->path);
  H5_CHECK_AT(*dset = H5Dopen2(f->id, name, H5P_DEFAULT), f->path, name);
  return DRL_OK;
}

/* Every element must be stored in the file: an extent beyond the storage (chunks never written, a truncated or
 * forged size) would read back as fill values, and a file of a few KiB could make a reader allocate gigabytes.
 * Uncompressed data (our writer's, Fletcher-32 or none) occupies at least its size and at most the file's;
 * compressed data (another writer's) may be smaller than its extent and is left to the callers' element limits. */
static drl_status check_stored(const drl_h5_file *f, const char *name, hid_t dset, uint64_t bytes) {
  drl_status st = DRL_OK;
  hid_t dcpl = H5I_INVALID_HID;
  hsize_t file_size = 0;
  if (bytes == 0) return DRL_OK;
  H5_CHECK_AT_GOTO(dcpl = H5Dget_create_plist(dset), f->path, name);
  int nfilters = H5Pget_nfilters(dcpl);
  H5_CHECK_AT_GOTO(nfilters, f->path, name);
  for (int i = 0; i < nfilters; i++) {
    unsigned flags = 0;
    size_t nvalues = 0;
    H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nvalues, NULL, 0, NULL, NULL);
    H5_CHECK_AT_GOTO(id, f->path, name);
    if (id != H5Z_FILTER_FLETCHER32) goto done; /* compressed */
  }
  hsize_t stored = H5Dget_storage_size(dset);
  H5_CHECK_AT_GOTO(H5Fget_filesize(f->id, &file_size), f->path, name);
  if (stored < bytes || bytes > file_size)
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s in %s: its extent needs %llu bytes but %llu are stored (file of %llu bytes): "
                  "missing or truncated data", name, f->path, (unsigned long long)bytes, (unsigned long long)stored,
                  (unsigned long long)file_size);
done:
  if (drl_h5_is_open(dcpl)) H5Pclose(dcpl);
  return st;
}

/* Checks the element type and rank of an open dataset; returns its extent and element count. */
static drl_status inspect_dataset(const drl_h5_file *f, const char *name, hid_t dset, drl_h5_type type, int rank,
                                  int64_t *shape, int64_t *count) {
  drl_status st = DRL_OK;
  hid_t t = H5I_INVALID_HID, space = H5I_INVALID_HID;
  if (!drl_h5_type_valid(type))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: invalid element type %d", name, f->path, (int)type);
  if (rank < 0 || rank > DRL_H5_MAX_RANK)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: rank %d outside [0, %d]", name, f->path, rank, DRL_H5_MAX_RANK);
  if (rank > 0 && !shape) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: NULL shape", name, f->path);
  H5_CHECK_AT_GOTO(t = H5Dget_type(dset), f->path, name);
  if (!type_matches(t, type)) {
    char found[64];
    describe_type(t, found, sizeof found);
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s in %s: expected %s, found %s", name, f->path, drl_h5_type_name(type), found);
    goto done;
  }
  H5_CHECK_AT_GOTO(space = H5Dget_space(dset), f->path, name);
  H5S_class_t cls = H5Sget_simple_extent_type(space);
  H5_CHECK_AT_GOTO(cls, f->path, name);
  if (cls == H5S_NULL) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s in %s: empty (null) dataspace, expected rank %d", name, f->path, rank);
    goto done;
  }
  int nd = H5Sget_simple_extent_ndims(space);
  H5_CHECK_AT_GOTO(nd, f->path, name);
  if (nd != rank) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s in %s: expected rank %d, found rank %d", name, f->path, rank, nd);
    goto done;
  }
  hsize_t dims[DRL_H5_MAX_RANK];
  H5_CHECK_AT_GOTO(H5Sget_simple_extent_dims(space, dims, NULL), f->path, name);
  int64_t n = 1;
  size_t esize = drl_h5_type_size(type);
  for (int i = 0; i < rank; i++) {
    if (dims[i] > (hsize_t)INT64_MAX || (dims[i] > 0 && (uint64_t)n > ((uint64_t)INT64_MAX / esize) / dims[i])) {
      st = DRL_FAIL(DRL_ERR_FORMAT, "%s in %s: extent too large (dimension %d = %llu)", name, f->path, i,
                    (unsigned long long)dims[i]);
      goto done;
    }
    n *= (int64_t)dims[i];
    shape[i] = (int64_t)dims[i];
  }
  DRL_TRY_GOTO(check_stored(f, name, dset, (uint64_t)n * esize));
  *count = n;
done:
  if (drl_h5_is_open(space)) H5Sclose(space);
  if (drl_h5_is_open(t)) H5Tclose(t);
  return st;
}

drl_status drl_h5_array_shape(const drl_h5_file *f, const char *name, drl_h5_type type, int rank, int64_t *shape) {
  drl_status st = DRL_OK;
  hid_t dset = H5I_INVALID_HID;
  int64_t count = 0;
  DRL_TRY_GOTO(open_dataset(f, name, &dset));
  DRL_TRY_GOTO(inspect_dataset(f, name, dset, type, rank, shape, &count));
done:
  if (drl_h5_is_open(dset)) H5Dclose(dset);
  return st;
}

drl_status drl_h5_read_array(const drl_h5_file *f, const char *name, drl_h5_type type, int rank, int64_t *shape,
                             int64_t max_elems, void **data) {
  drl_status st = DRL_OK;
  hid_t dset = H5I_INVALID_HID;
  void *buf = NULL;
  int64_t count = 0;
  if (!data) return DRL_FAIL(DRL_ERR_INVALID_ARG, "NULL data pointer");
  *data = NULL;
  DRL_TRY_GOTO(open_dataset(f, name, &dset));
  DRL_TRY_GOTO(inspect_dataset(f, name, dset, type, rank, shape, &count));
  if (count > max_elems) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s in %s: %lld elements exceed the limit of %lld", name, f->path,
                  (long long)count, (long long)max_elems);
    goto done;
  }
  size_t bytes = (size_t)count * drl_h5_type_size(type);
  buf = malloc(bytes ? bytes : 1);
  if (!buf) {
    st = DRL_FAIL(DRL_ERR_OOM, "%s in %s: cannot allocate %zu bytes", name, f->path, bytes);
    goto done;
  }
  if (count > 0) H5_CHECK_AT_GOTO(H5Dread(dset, drl_h5_mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), f->path, name);
  *data = buf;
  buf = NULL;
done:
  free(buf);
  if (drl_h5_is_open(dset)) H5Dclose(dset);
  return st;
}

drl_status drl_h5_read_array_into(const drl_h5_file *f, const char *name, drl_h5_type type, int rank,
                                  const int64_t *shape, void *data) {
  drl_status st = DRL_OK;
  hid_t dset = H5I_INVALID_HID;
  int64_t found[DRL_H5_MAX_RANK];
  int64_t count = 0;
  DRL_TRY_GOTO(open_dataset(f, name, &dset));
  DRL_TRY_GOTO(inspect_dataset(f, name, dset, type, rank, found, &count));
  for (int i = 0; i < rank; i++) {
    if (found[i] != shape[i]) {
      st = DRL_FAIL(DRL_ERR_FORMAT, "%s in %s: dimension %d is %lld, expected %lld", name, f->path, i,
                    (long long)found[i], (long long)shape[i]);
      goto done;
    }
  }
  if (count > 0 && !data) {
    st = DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: NULL data", name, f->path);
    goto done;
  }
  if (count > 0) H5_CHECK_AT_GOTO(H5Dread(dset, drl_h5_mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data), f->path, name);
done:
  if (drl_h5_is_open(dset)) H5Dclose(dset);
  return st;
}

/* Opens attribute attr of obj, checking both exist and that it holds exactly one value; *type gets its datatype. */
static drl_status open_attr(const drl_h5_file *f, const char *obj, const char *attr, hid_t *a, hid_t *type) {
  drl_status st = DRL_OK;
  hid_t o = H5I_INVALID_HID, space = H5I_INVALID_HID;
  *a = H5I_INVALID_HID;
  *type = H5I_INVALID_HID;
  DRL_TRY(drl_h5_check_file(f));
  DRL_TRY(drl_h5_check_name(f, obj, "object"));
  if (!attr || !attr[0]) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: empty attribute name", obj, f->path);
  int exists = 0;
  DRL_TRY(drl_h5_exists_in(f, obj, &exists));
  if (!exists) return DRL_FAIL(DRL_ERR_FORMAT, "%s in %s: not found (looking for attribute '%s')", obj, f->path, attr);
  H5_CHECK_AT_GOTO(o = H5Oopen(f->id, obj, H5P_DEFAULT), f->path, obj);
  htri_t has = H5Aexists(o, attr);
  H5_CHECK_AT_GOTO(has, f->path, obj);
  if (!has) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "attribute '%s' of %s in %s: not found", attr, obj, f->path);
    goto done;
  }
  H5_CHECK_AT_GOTO(*a = H5Aopen(o, attr, H5P_DEFAULT), f->path, obj);
  H5_CHECK_AT_GOTO(space = H5Aget_space(*a), f->path, obj);
  hssize_t npoints = H5Sget_simple_extent_npoints(space);
  H5_CHECK_AT_GOTO(npoints, f->path, obj);
  if (npoints != 1) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "attribute '%s' of %s in %s: expected one value, found %lld", attr, obj, f->path,
                  (long long)npoints);
    goto done;
  }
  H5_CHECK_AT_GOTO(*type = H5Aget_type(*a), f->path, obj);
done:
  if (drl_h5_is_open(space)) H5Sclose(space);
  if (drl_h5_is_open(o)) H5Oclose(o);
  if (st != DRL_OK) {
    if (drl_h5_is_open(*type)) H5Tclose(*type);
    if (drl_h5_is_open(*a)) H5Aclose(*a);
    *a = *type = H5I_INVALID_HID;
  }
  return st;
}

static drl_status attr_type_error(const drl_h5_file *f, const char *obj, const char *attr, const char *expected,
                                  hid_t type) {
  char found[64];
  describe_type(type, found, sizeof found);
  return DRL_FAIL(DRL_ERR_FORMAT, "attribute '%s' of %s in %s: expected %s, found %s", attr, obj, f->path, expected,
                  found);
}

drl_status drl_h5_read_attr_string(const drl_h5_file *f, const char *obj, const char *attr, char *buf, size_t cap) {
  drl_status st = DRL_OK;
  hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID, mt = H5I_INVALID_HID;
  char *vstr = NULL, *fixed = NULL;
  if (!buf || cap == 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "attribute '%s': no buffer", attr ? attr : "?");
  buf[0] = '\0';
  DRL_TRY_GOTO(open_attr(f, obj, attr, &a, &t));
  if (H5Tget_class(t) != H5T_STRING) {
    st = attr_type_error(f, obj, attr, "string", t);
    goto done;
  }
  htri_t variable = H5Tis_variable_str(t);
  H5_CHECK_AT_GOTO(variable, f->path, obj);
  H5T_cset_t cset = H5Tget_cset(t);
  H5_CHECK_AT_GOTO(cset, f->path, obj);
  H5_CHECK_AT_GOTO(mt = H5Tcopy(H5T_C_S1), f->path, obj);
  H5_CHECK_AT_GOTO(H5Tset_cset(mt, cset), f->path, obj);
  const char *value = NULL;
  if (variable) {
    H5_CHECK_AT_GOTO(H5Tset_size(mt, H5T_VARIABLE), f->path, obj);
    H5_CHECK_AT_GOTO(H5Aread(a, mt, &vstr), f->path, obj);
    value = vstr ? vstr : "";
  } else {
    size_t size = H5Tget_size(t);
    if (size == 0 || size > STRING_ATTR_MAX_BYTES) {
      st = DRL_FAIL(DRL_ERR_FORMAT, "attribute '%s' of %s in %s: implausible string size %zu", attr, obj, f->path,
                    size);
      goto done;
    }
    /* One more byte than stored, NUL-terminated: HDF5 converts any padding and keeps every character. */
    H5_CHECK_AT_GOTO(H5Tset_size(mt, size + 1), f->path, obj);
    H5_CHECK_AT_GOTO(H5Tset_strpad(mt, H5T_STR_NULLTERM), f->path, obj);
    fixed = (char *)calloc(size + 1, 1);
    if (!fixed) {
      st = DRL_FAIL(DRL_ERR_OOM, "attribute '%s' of %s in %s: cannot allocate %zu bytes", attr, obj, f->path, size);
      goto done;
    }
    H5_CHECK_AT_GOTO(H5Aread(a, mt, fixed), f->path, obj);
    fixed[size] = '\0';
    value = fixed;
  }
  size_t len = strlen(value);
  if (len >= cap) {
    st = DRL_FAIL(DRL_ERR_FORMAT, "attribute '%s' of %s in %s: string of %zu bytes exceeds the limit of %zu", attr,
                  obj, f->path, len, cap - 1);
    goto done;
  }
  memcpy(buf, value, len + 1);
done:
  if (vstr) H5free_memory(vstr);
  free(fixed);
  if (drl_h5_is_open(mt)) H5Tclose(mt);
  if (drl_h5_is_open(t)) H5Tclose(t);
  if (drl_h5_is_open(a)) H5Aclose(a);
  return st;
}

drl_status drl_h5_read_attr_int64(const drl_h5_file *f, const char *obj, const char *attr, int64_t *value) {
  drl_status st = DRL_OK;
  hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID;
  if (!value) return DRL_FAIL(DRL_ERR_INVALID_ARG, "attribute '%s': NULL value", attr ? attr : "?");
  *value = 0;
  DRL_TRY_GOTO(open_attr(f, obj, attr, &a, &t));
  /* uint64 could exceed int64: refuse it rather than let the conversion clip silently. */
  if (H5Tget_class(t) != H5T_INTEGER || H5Tget_size(t) > 8 ||
      (H5Tget_size(t) == 8 && H5Tget_sign(t) == H5T_SGN_NONE)) {
    st = attr_type_error(f, obj, attr, "int64", t);
    goto done;
  }
  H5_CHECK_AT_GOTO(H5Aread(a, H5T_NATIVE_INT64, value), f->path, obj);
done:
  if (drl_h5_is_open(t)) H5Tclose(t);
  if (drl_h5_is_open(a)) H5Aclose(a);
  return st;
}

drl_status drl_h5_read_attr_double(const drl_h5_file *f, const char *obj, const char *attr, double *value) {
  drl_status st = DRL_OK;
  hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID;
  if (!value) return DRL_FAIL(DRL_ERR_INVALID_ARG, "attribute '%s': NULL value", attr ? attr : "?");
  *value = 0.0;
  DRL_TRY_GOTO(open_attr(f, obj, attr, &a, &t));
  if (H5Tget_class(t) != H5T_FLOAT) {
    st = attr_type_error(f, obj, attr, "float64", t);
    goto done;
  }
  H5_CHECK_AT_GOTO(H5Aread(a, H5T_NATIVE_DOUBLE, value), f->path, obj);
done:
  if (drl_h5_is_open(t)) H5Tclose(t);
  if (drl_h5_is_open(a)) H5Aclose(a);
  return st;
}

drl_status drl_h5_attr_exists(const drl_h5_file *f, const char *obj, const char *attr, int *exists) {
  drl_status st = DRL_OK;
  hid_t o = H5I_INVALID_HID;
  if (!exists) return DRL_FAIL(DRL_ERR_INVALID_ARG, "NULL exists");
  *exists = 0;
  DRL_TRY(drl_h5_check_file(f));
  DRL_TRY(drl_h5_check_name(f, obj, "object"));
  if (!attr || !attr[0]) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s in %s: empty attribute name", obj, f->path);
  int obj_exists = 0;
  DRL_TRY(drl_h5_exists_in(f, obj, &obj_exists));
  if (!obj_exists) return DRL_FAIL(DRL_ERR_FORMAT, "%s in %s: not found", obj, f->path);
  H5_CHECK_AT_GOTO(o = H5Oopen(f->id, obj, H5P_DEFAULT), f->path, obj);
  htri_t has = H5Aexists(o, attr);
  H5_CHECK_AT_GOTO(has, f->path, obj);
  *exists = has > 0;
done:
  if (drl_h5_is_open(o)) H5Oclose(o);
  return st;
}
