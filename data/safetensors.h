/* safetensors, Hugging Face's tensor file: a little-endian u64 N, N bytes of JSON header, then the data.
 *   {"__metadata__": {"format": "pt"}, "name": {"dtype": "BF16", "shape": [r, c], "data_offsets": [b, e]}, ...}
 * Offsets are relative to the data section; sorted by offset, the tensors tile it exactly, and the file ends with the
 * last one. A model too large for one file is sharded, with model.safetensors.index.json mapping each tensor name to
 * its shard: {"metadata": {"total_size": B}, "weight_map": {"name": "model-00001-of-00002.safetensors", ...}}.
 *
 * The reader memory-maps each file, validates the whole header before any tensor is used (header length at most 1e8
 * and inside the file, a JSON object without duplicate keys, known dtypes, shapes whose element count times the
 * dtype's size is the tensor's byte count, offsets that tile the data section, a file size that matches), and reads
 * F32, BF16 and F16 into fp32 from pointers of any alignment. The writer writes F32 or BF16 (rounded to nearest even),
 * every file atomically (temp file, fsync, rename). Every error names the file and the tensor. The JSON goes through
 * jansson (docs/models.md says why). */
#ifndef DRL_SAFETENSORS_H
#define DRL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DRL_ST_MAX_DIMS 8
/* The largest header the reader accepts (the reference implementation's bound). */
#define DRL_ST_MAX_HEADER 100000000ull

typedef struct drl_st_tensor {
  char *name;
  const char *dtype;  /* "F32", "BF16", ...: a static string */
  int bits;           /* per element */
  int ndim;
  int64_t shape[DRL_ST_MAX_DIMS];
  int64_t numel;
  uint64_t begin, end; /* data_offsets, relative to the data section */
  int file;            /* which file of the set holds it */
} drl_st_tensor;

/* One validated header. */
typedef struct drl_st_header {
  int count;
  drl_st_tensor *tensors; /* in the header's order */
  uint64_t data_start;    /* 8 + N: where the data section begins */
} drl_st_header;

/* Parses and validates the whole file held in bytes[0, size) (named `file` in messages). On failure h is empty. */
drl_status drl_st_parse(const char *file, const unsigned char *bytes, size_t size, drl_st_header *h);
void drl_st_header_free(drl_st_header *h);

typedef struct drl_st_file {
  char *path;
  const unsigned char *map; /* the whole file, read-only */
  size_t size;
  uint64_t data_start;
} drl_st_file;

/* A set of one or more files seen as one table of tensors. */
typedef struct drl_safetensors {
  int nfiles;
  drl_st_file *files;
  int count;
  drl_st_tensor *tensors; /* sorted by name */
} drl_safetensors;

/* Opens path: a .safetensors file, a model.safetensors.index.json, or a directory holding either (the index wins).
 * Every file is validated; with an index, every tensor it maps must be in its shard and every shard's tensor in the
 * index, each name once. On failure st is empty. */
drl_status drl_st_open(drl_safetensors *st, const char *path);
void drl_st_close(drl_safetensors *st);

/* The tensor called name, or NULL. */
const drl_st_tensor *drl_st_find(const drl_safetensors *st, const char *name);

/* out[0, t->numel) = the tensor in fp32 (F32, BF16, F16; any other dtype is DRL_ERR_UNSUPPORTED naming it). */
drl_status drl_st_read_f32(const drl_safetensors *st, const drl_st_tensor *t, float *out);

/* A tensor to write: numel(shape) floats at data. */
typedef struct drl_st_source {
  const char *name;
  const float *data;
  int ndim;
  int64_t shape[DRL_ST_MAX_DIMS];
} drl_st_source;

/* Writes n tensors to path (in the given order) as dtype "F32" or "BF16", with {"format": "pt"} metadata. */
drl_status drl_st_write(const char *path, const drl_st_source *ts, int n, const char *dtype);

/* Writes n tensors into directory dir: model.safetensors when they fit in max_shard_bytes, else shards of at most
 * max_shard_bytes each (a larger tensor alone in its shard), model-0000k-of-0000n.safetensors, and then the index.
 * Returns the number of shards written in *shards (may be NULL). */
drl_status drl_st_write_model(const char *dir, const drl_st_source *ts, int n, const char *dtype,
                              uint64_t max_shard_bytes, int *shards);

#ifdef __cplusplus
}
#endif
#endif /* DRL_SAFETENSORS_H */
