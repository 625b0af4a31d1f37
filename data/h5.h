/* A thin layer over the HDF5 C API (DESIGN §9): named flat arrays with a shape, root/group attributes, an atomic
 * writer (temp file, fsync, rename) and a validating reader. Datasets, checkpoints and metrics build on it.
 *
 * Files are written with the HDF5 1.10 format (superblock v3, object headers v2): every piece of metadata carries a
 * checksum, arrays over 4 KiB are chunked with a Fletcher-32 checksum per chunk, smaller ones live inside their
 * checksummed object header, so a corrupted byte becomes an error instead of a silently wrong number. Creation times
 * are not recorded, so the same content gives the same bytes. h5py and h5dump (HDF5 >= 1.10) open these files.
 *
 * Every error message names the file and the object ("/prompts/offsets in foo.h5: expected int64, found float32").
 * HDF5's own stderr printing is turned off; its innermost message goes into drl_last_error() instead.
 * Not thread-safe (the serial HDF5 library is not): use from one thread at a time. */
#ifndef DRL_H5_H
#define DRL_H5_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DRL_H5_MAX_RANK 4
#define DRL_H5_PATH_CAP 4096

/* Element types of the arrays and their HDF5 counterparts (little-endian in the file, native in memory). */
typedef enum drl_h5_type {
  DRL_H5_INT32,
  DRL_H5_INT64,
  DRL_H5_UINT8,
  DRL_H5_UINT64,
  DRL_H5_FLOAT32,
  DRL_H5_FLOAT64
} drl_h5_type;

/* An open HDF5 file. path is the name used in messages (for a writer: the final name, not the temp name). */
typedef struct drl_h5_file {
  hid_t id;  /* H5I_INVALID_HID when closed */
  char path[DRL_H5_PATH_CAP];
} drl_h5_file;

/* An atomic writer: objects go to tmp_path; commit renames it onto file.path. */
typedef struct drl_h5_writer {
  drl_h5_file file;
  char tmp_path[DRL_H5_PATH_CAP + 32];
} drl_h5_writer;

/* Records a failed HDF5 call as DRL_ERR_IO: "[obj in ]path: call failed: <HDF5's innermost message>"; obj and path
 * may be NULL. Call it right after the failure: the next HDF5 call clears HDF5's error stack. Returns DRL_ERR_IO. */
drl_status drl_h5_fail(const char *file, int line, const char *call, const char *path, const char *obj);

/* HDF5 calls return negative herr_t / hid_t / htri_t on failure. H5_CHECK returns from the function;
 * H5_CHECK_GOTO (functions with `drl_status st` and a `done:` label that closes handles) sets st and jumps.
 * The _AT variants name the file path and object in the message. (The call is stringized here, before any
 * expansion, so the message shows the call as written.) */
#define DRL_H5_CHECK_RETURN_(call, text, path, obj)                               \
  do {                                                                            \
    if ((call) < 0) return drl_h5_fail(__FILE__, __LINE__, (text), (path), (obj)); \
  } while (0)
#define DRL_H5_CHECK_GOTO_(call, text, path, obj)                          \
  do {                                                                    \
    if ((call) < 0) {                                                     \
      st = drl_h5_fail(__FILE__, __LINE__, (text), (path), (obj));        \
      goto done;                                                          \
    }                                                                     \
  } while (0)
#define H5_CHECK(call) DRL_H5_CHECK_RETURN_(call, #call, NULL, NULL)
#define H5_CHECK_GOTO(call) DRL_H5_CHECK_GOTO_(call, #call, NULL, NULL)
#define H5_CHECK_AT(call, path, obj) DRL_H5_CHECK_RETURN_(call, #call, path, obj)
#define H5_CHECK_AT_GOTO(call, path, obj) DRL_H5_CHECK_GOTO_(call, #call, path, obj)

/* Turns off HDF5's automatic error printing to stderr (idempotent; the open functions call it). */
void drl_h5_quiet(void);

/* Keeps HDF5 from closing files at process exit; call it first thing in main, before any other HDF5 call. After a
 * failed write (disk full, file-size limit) HDF5 1.10 cannot close that file, and its exit-time cleanup then crashes
 * the process; every file is closed explicitly anyway. */
void drl_h5_no_exit_cleanup(void);

/* The type's name for messages ("int32", "float32", ...). */
const char *drl_h5_type_name(drl_h5_type type);

/* The size in bytes of one element of type. */
size_t drl_h5_type_size(drl_h5_type type);

/* The type an element type is stored as: little-endian whatever the host, so files are the same bytes everywhere. */
hid_t drl_h5_file_type(drl_h5_type type);

/* ---- writing ---- */

/* Creates "<path>.tmp.<pid>" (replacing a stale one of that name) for writing; w->file is the handle to write to.
 * One writer per path per process at a time. On failure w is closed and nothing is left on disk. */
drl_status drl_h5_writer_open(drl_h5_writer *w, const char *path);

/* Flushes and closes the temp file, fsyncs it, renames it onto path and fsyncs the directory: afterwards path holds
 * the new content, and a crash at any point leaves either the old file or the new one. On failure the temp file is
 * removed and path is untouched. w is closed either way. */
drl_status drl_h5_writer_commit(drl_h5_writer *w);

/* Closes and removes the temp file; path is untouched. Safe on a closed or zeroed writer. */
void drl_h5_writer_abort(drl_h5_writer *w);

/* Writes the array data (row-major, prod(shape) elements; rank 0 = one scalar; shape may be NULL then) as dataset
 * name ("/prompts/tokens"), creating missing groups on the way. 0-element arrays are allowed (data may be NULL). */
drl_status drl_h5_write_array(drl_h5_file *f, const char *name, drl_h5_type type, int rank, const int64_t *shape,
                              const void *data);

/* Writes a 1-D array of n elements: drl_h5_write_array with rank 1. */
drl_status drl_h5_write_array1d(drl_h5_file *f, const char *name, drl_h5_type type, int64_t n, const void *data);

/* Sets attribute attr of object obj ("/" for the root, a group or dataset path; missing groups are created), as a
 * fixed-length NUL-terminated ASCII string / int64 / double. An existing attribute of that name is replaced. */
drl_status drl_h5_write_attr_string(drl_h5_file *f, const char *obj, const char *attr, const char *value);
drl_status drl_h5_write_attr_int64(drl_h5_file *f, const char *obj, const char *attr, int64_t value);
drl_status drl_h5_write_attr_double(drl_h5_file *f, const char *obj, const char *attr, double value);

/* ---- reading ---- */

/* Opens an existing HDF5 file read-only; a missing, unreadable, non-HDF5 or truncated file is an error that says so. */
drl_status drl_h5_open_read(const char *path, drl_h5_file *f);

/* Closes f (safe on a closed or zeroed one) and marks it closed. */
void drl_h5_close(drl_h5_file *f);

/* Sets *exists to whether object name (group or dataset; every component checked) exists in f. */
drl_status drl_h5_exists(const drl_h5_file *f, const char *name, int *exists);

/* Checks that dataset name exists, holds elements of type (class, size and signedness) and has the given rank, and
 * stores its extent in shape[0..rank) (shape may be NULL for rank 0). Reads no data. */
drl_status drl_h5_array_shape(const drl_h5_file *f, const char *name, drl_h5_type type, int rank, int64_t *shape);

/* drl_h5_array_shape, then checks the element count is <= max_elems, allocates (malloc; the caller frees *data; never
 * NULL on success, even for 0 elements) and reads. On failure *data is NULL and shape is unspecified. */
drl_status drl_h5_read_array(const drl_h5_file *f, const char *name, drl_h5_type type, int rank, int64_t *shape,
                             int64_t max_elems, void **data);

/* drl_h5_array_shape, then checks the extent equals shape exactly (the message names the first differing dimension)
 * and reads into the caller's buffer of prod(shape) elements. */
drl_status drl_h5_read_array_into(const drl_h5_file *f, const char *name, drl_h5_type type, int rank,
                                  const int64_t *shape, void *data);

/* Reads string attribute attr of object obj into buf (fixed- or variable-length; NUL-terminated); a value that
 * does not fit in cap - 1 bytes is an error, never a truncation. */
drl_status drl_h5_read_attr_string(const drl_h5_file *f, const char *obj, const char *attr, char *buf, size_t cap);

/* Reads an integer attribute (any signed integer, or an unsigned one narrower than 64 bits) as int64. */
drl_status drl_h5_read_attr_int64(const drl_h5_file *f, const char *obj, const char *attr, int64_t *value);

/* Reads a floating-point attribute as double. */
drl_status drl_h5_read_attr_double(const drl_h5_file *f, const char *obj, const char *attr, double *value);

/* Sets *exists to whether object obj (which must exist) has attribute attr. */
drl_status drl_h5_attr_exists(const drl_h5_file *f, const char *obj, const char *attr, int *exists);

#ifdef __cplusplus
}
#endif
#endif /* DRL_H5_H */
