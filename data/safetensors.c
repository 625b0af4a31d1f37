/* safetensors reader and writer (safetensors.h). */
#define _DEFAULT_SOURCE /* madvise */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "file_read.h"
#include "kernels/float16.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian: this reader copies it as is"
#endif

/* ---- dtypes ---- */

typedef struct dtype_info {
  const char *name;
  int bits;
} dtype_info;

/* Every dtype the format defines (safetensors' Dtype enum); dynrl reads the first three. */
static const dtype_info kDtypes[] = {
    {"F32", 32},     {"BF16", 16},    {"F16", 16},     {"F64", 64},     {"I64", 64},   {"I32", 32},
    {"I16", 16},     {"I8", 8},       {"U8", 8},       {"BOOL", 8},     {"U16", 16},   {"U32", 32},
    {"U64", 64},     {"F8_E4M3", 8},  {"F8_E5M2", 8},  {"F8_E8M0", 8},  {"F6_E2M3", 6}, {"F6_E3M2", 6},
    {"F4", 4},       {"C64", 64},
};

static const dtype_info *dtype_find(const char *name) {
  for (size_t i = 0; i < sizeof kDtypes / sizeof kDtypes[0]; ++i)
    if (strcmp(kDtypes[i].name, name) == 0) return &kDtypes[i];
  return NULL;
}

/* ---- header ---- */

void drl_st_header_free(drl_st_header *h) {
  if (!h) return;
  for (int i = 0; i < h->count; ++i) free(h->tensors[i].name);
  free(h->tensors);
  memset(h, 0, sizeof *h);
}

static drl_status bad(const char *file, const char *tensor, const char *what) {
  if (tensor) return DRL_FAIL(DRL_ERR_FORMAT, "%s: tensor \"%s\": %s", file, tensor, what);
  return DRL_FAIL(DRL_ERR_FORMAT, "%s: %s", file, what);
}

/* A JSON integer >= 0 (jansson keeps integers exact in 64 bits). */
static int json_uint(const json_t *v, uint64_t *out) {
  if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
  *out = (uint64_t)json_integer_value(v);
  return 1;
}

/* One tensor entry: dtype, shape and offsets; the byte count must be what they imply. */
static drl_status parse_entry(const char *file, const char *name, const json_t *v, drl_st_tensor *t) {
  char msg[160];
  if (!json_is_object(v)) return bad(file, name, "the entry is not a JSON object");
  const json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
               *offs = json_object_get(v, "data_offsets");
  if (!json_is_string(dt)) return bad(file, name, "\"dtype\" is missing or not a string");
  const dtype_info *info = dtype_find(json_string_value(dt));
  if (!info) {
    snprintf(msg, sizeof msg, "unknown dtype \"%.32s\"", json_string_value(dt));
    return bad(file, name, msg);
  }
  if (!json_is_array(shape)) return bad(file, name, "\"shape\" is missing or not an array");
  if (json_array_size(shape) > DRL_ST_MAX_DIMS) {
    snprintf(msg, sizeof msg, "%zu dimensions (dynrl reads at most %d)", json_array_size(shape), DRL_ST_MAX_DIMS);
    return bad(file, name, msg);
  }
  if (!json_is_array(offs) || json_array_size(offs) != 2)
    return bad(file, name, "\"data_offsets\" is missing or not an array of two integers");
  t->dtype = info->name;
  t->bits = info->bits;
  t->ndim = (int)json_array_size(shape);
  uint64_t numel = 1;
  for (int d = 0; d < t->ndim; ++d) {
    uint64_t n;
    if (!json_uint(json_array_get(shape, (size_t)d), &n) || n > (uint64_t)INT64_MAX)
      return bad(file, name, "a dimension of \"shape\" is not an integer >= 0");
    if (n && numel > (uint64_t)INT64_MAX / n) return bad(file, name, "the shape's element count overflows");
    numel *= n;
    t->shape[d] = (int64_t)n;
  }
  t->numel = (int64_t)numel;
  if (!json_uint(json_array_get(offs, 0), &t->begin) || !json_uint(json_array_get(offs, 1), &t->end))
    return bad(file, name, "\"data_offsets\" are not integers >= 0");
  if (t->end < t->begin) return bad(file, name, "\"data_offsets\" end before they begin");
  if (numel > UINT64_MAX / (uint64_t)info->bits || (numel * (uint64_t)info->bits) % 8) {
    snprintf(msg, sizeof msg, "%llu elements of %s are not a whole number of bytes", (unsigned long long)numel,
             info->name);
    return bad(file, name, msg);
  }
  uint64_t bytes = numel * (uint64_t)info->bits / 8;
  if (t->end - t->begin != bytes) {
    snprintf(msg, sizeof msg, "dtype %s x shape gives %llu bytes, its data_offsets [%llu, %llu) hold %llu",
             info->name, (unsigned long long)bytes, (unsigned long long)t->begin, (unsigned long long)t->end,
             (unsigned long long)(t->end - t->begin));
    return bad(file, name, msg);
  }
  return DRL_OK;
}

static int by_begin(const void *a, const void *b) {
  const drl_st_tensor *x = *(const drl_st_tensor *const *)a, *y = *(const drl_st_tensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* Sorted by offset, the tensors must cover [0, data_bytes) with neither holes nor overlaps. */
static drl_status check_tiling(const char *file, drl_st_header *h, uint64_t data_bytes) {
  drl_status st = DRL_OK;
  const drl_st_tensor **order = (const drl_st_tensor **)malloc(((size_t)h->count + 1) * sizeof *order);
  if (!order) return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for %d tensors", file, h->count);
  for (int i = 0; i < h->count; ++i) order[i] = &h->tensors[i];
  qsort(order, (size_t)h->count, sizeof *order, by_begin);
  uint64_t at = 0;
  char msg[200];
  for (int i = 0; i < h->count && st == DRL_OK; ++i) {
    if (order[i]->begin != at) {
      snprintf(msg, sizeof msg, "its data begins at %llu, but the previous tensor%s%s%s ends at %llu (%s)",
               (unsigned long long)order[i]->begin, i ? " \"" : "", i ? order[i - 1]->name : "", i ? "\"" : "",
               (unsigned long long)at, order[i]->begin > at ? "a hole" : "an overlap");
      st = bad(file, order[i]->name, msg);
    }
    at = order[i]->end;
  }
  if (st == DRL_OK && at != data_bytes) {
    snprintf(msg, sizeof msg, "the tensors end at byte %llu of the data section, the file holds %llu",
             (unsigned long long)at, (unsigned long long)data_bytes);
    st = bad(file, NULL, msg);
  }
  free(order);
  return st;
}

static drl_status parse_metadata(const char *file, const json_t *meta) {
  if (!json_is_object(meta)) return bad(file, NULL, "\"__metadata__\" is not a JSON object");
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)meta, k, v) {
    if (!json_is_string(v)) {
      char msg[160];
      snprintf(msg, sizeof msg, "\"__metadata__\" value of \"%.64s\" is not a string", k);
      return bad(file, NULL, msg);
    }
  }
  return DRL_OK;
}

drl_status drl_st_parse(const char *file, const unsigned char *bytes, size_t size, drl_st_header *h) {
  memset(h, 0, sizeof *h);
  char msg[200];
  if (size < 8) {
    snprintf(msg, sizeof msg, "%zu bytes: too short for the 8-byte header length", size);
    return bad(file, NULL, msg);
  }
  uint64_t n = 0;
  memcpy(&n, bytes, 8);
  if (n > DRL_ST_MAX_HEADER) {
    snprintf(msg, sizeof msg, "header length %llu exceeds the limit of %llu bytes", (unsigned long long)n,
             (unsigned long long)DRL_ST_MAX_HEADER);
    return bad(file, NULL, msg);
  }
  if (n > size - 8) {
    snprintf(msg, sizeof msg, "header length %llu runs past the end of the file (%zu bytes): truncated?",
             (unsigned long long)n, size);
    return bad(file, NULL, msg);
  }
  if (n == 0 || bytes[8] != '{') return bad(file, NULL, "the header does not start with '{'");
  json_error_t jerr;
  json_t *root = json_loadb((const char *)bytes + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return DRL_FAIL(DRL_ERR_FORMAT, "%s: the header is not valid JSON: %s (at byte %d)", file, jerr.text,
                    jerr.position);
  drl_status st = DRL_OK;
  if (!json_is_object(root)) {
    st = bad(file, NULL, "the header is not a JSON object");
    goto done;
  }
  size_t entries = json_object_size(root);
  h->tensors = (drl_st_tensor *)calloc(entries ? entries : 1, sizeof *h->tensors);
  if (!h->tensors) {
    st = DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for %zu tensors", file, entries);
    goto done;
  }
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (strcmp(key, "__metadata__") == 0) {
      DRL_TRY_GOTO(parse_metadata(file, v));
      continue;
    }
    drl_st_tensor *t = &h->tensors[h->count];
    if (!(t->name = strdup(key))) {
      st = DRL_FAIL(DRL_ERR_OOM, "%s: out of memory", file);
      goto done;
    }
    ++h->count;
    DRL_TRY_GOTO(parse_entry(file, key, v, t));
  }
  h->data_start = 8 + n;
  st = check_tiling(file, h, (uint64_t)size - h->data_start);
done:
  json_decref(root);
  if (st != DRL_OK) drl_st_header_free(h);
  return st;
}

/* ---- reading a set of files ---- */

static int by_name(const void *a, const void *b) {
  return strcmp(((const drl_st_tensor *)a)->name, ((const drl_st_tensor *)b)->name);
}

void drl_st_close(drl_safetensors *st) {
  if (!st) return;
  for (int i = 0; i < st->nfiles; ++i) {
    if (st->files[i].map) munmap((void *)st->files[i].map, st->files[i].size);
    free(st->files[i].path);
  }
  for (int i = 0; i < st->count; ++i) free(st->tensors[i].name);
  free(st->files);
  free(st->tensors);
  memset(st, 0, sizeof *st);
}

/* Maps path read-only into a new entry of st->files and validates it; its tensors join st->tensors. */
static drl_status add_file(drl_safetensors *st, const char *path) {
  drl_st_file *files = (drl_st_file *)realloc(st->files, ((size_t)st->nfiles + 1) * sizeof *files);
  if (!files) return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory", path);
  st->files = files;
  drl_st_file *f = &files[st->nfiles];
  memset(f, 0, sizeof *f);
  if (!(f->path = strdup(path))) return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory", path);
  ++st->nfiles;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return DRL_FAIL(DRL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return DRL_FAIL(DRL_ERR_IO, "%s: not a regular file", path);
  }
  f->size = (size_t)sb.st_size;
  if (f->size > 0) {
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      close(fd);
      return DRL_FAIL(DRL_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, f->size, strerror(errno));
    }
    f->map = (const unsigned char *)m;
  }
  close(fd);
  drl_st_header h;
  static const unsigned char empty[1];
  DRL_TRY(drl_st_parse(path, f->map ? f->map : empty, f->size, &h));
  f->data_start = h.data_start;
  drl_st_tensor *all = (drl_st_tensor *)realloc(st->tensors, ((size_t)st->count + h.count + 1) * sizeof *all);
  if (!all) {
    drl_st_header_free(&h);
    return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory", path);
  }
  st->tensors = all;
  for (int i = 0; i < h.count; ++i) {
    all[st->count] = h.tensors[i];
    all[st->count++].file = st->nfiles - 1;
  }
  free(h.tensors); /* the names moved into st */
  return DRL_OK;
}

static int exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* A shard's file name from an index: a plain name in the index's directory, nothing that climbs out of it. */
static int plain_file_name(const char *s) {
  return s[0] && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\');
}

static drl_status open_index(drl_safetensors *set, const char *index_path) {
  char *text = NULL;
  size_t len = 0;
  DRL_TRY(drl_read_file(index_path, (size_t)64 << 20, &text, &len));
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  free(text);
  if (!root) return bad(index_path, NULL, jerr.text);
  drl_status st = DRL_OK;
  char dir[DRL_FILE_PATH_CAP], path[2 * DRL_FILE_PATH_CAP + 2];
  drl_dir_of(index_path, dir, sizeof dir);
  const json_t *map = json_object_get(root, "weight_map");
  const char *name;
  json_t *v;
  if (!json_is_object(map) || json_object_size(map) == 0) {
    st = bad(index_path, NULL, "\"weight_map\" is missing, empty or not a JSON object");
    goto done;
  }
  /* Each shard once, in the order the index first names it. */
  json_object_foreach((json_t *)map, name, v) {
    if (!json_is_string(v) || !plain_file_name(json_string_value(v))) {
      st = bad(index_path, name, "its shard is not a plain file name in the index's directory");
      goto done;
    }
    snprintf(path, sizeof path, "%s/%s", dir, json_string_value(v));
    int seen = 0;
    for (int i = 0; i < set->nfiles && !seen; ++i) seen = strcmp(set->files[i].path, path) == 0;
    if (!seen) DRL_TRY_GOTO(add_file(set, path));
  }
  /* Every tensor of a shard must be where the index says, and the index must name nothing else. */
  for (int i = 0; i < set->count; ++i) {
    const json_t *where = json_object_get(map, set->tensors[i].name);
    const char *want = where ? json_string_value(where) : NULL;
    const char *file = set->files[set->tensors[i].file].path, *slash = strrchr(file, '/');
    if (!want || strcmp(want, slash ? slash + 1 : file) != 0) {
      char msg[DRL_FILE_PATH_CAP + 100];
      snprintf(msg, sizeof msg, "it is in %s, but the index %s", file, want ? "maps it to another shard" : "omits it");
      st = bad(index_path, set->tensors[i].name, msg);
      goto done;
    }
  }
  if ((size_t)set->count != json_object_size(map)) {
    json_object_foreach((json_t *)map, name, v) {
      int found = 0;
      for (int i = 0; i < set->count && !found; ++i) found = strcmp(set->tensors[i].name, name) == 0;
      if (!found) {
        snprintf(path, sizeof path, "the index maps it to %s, which does not hold it", json_string_value(v));
        st = bad(index_path, name, path);
        goto done;
      }
    }
  }
done:
  json_decref(root);
  return st;
}

drl_status drl_st_open(drl_safetensors *st, const char *path) {
  memset(st, 0, sizeof *st);
  if (!path || !path[0]) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_st_open: empty path");
  char buf[DRL_FILE_PATH_CAP + 64];
  drl_status s;
  if (drl_is_dir(path)) {
    snprintf(buf, sizeof buf, "%s/model.safetensors.index.json", path);
    if (exists(buf)) {
      s = open_index(st, buf);
    } else {
      snprintf(buf, sizeof buf, "%s/model.safetensors", path);
      if (!exists(buf)) return DRL_FAIL(DRL_ERR_IO, "%s: holds neither model.safetensors nor model.safetensors.index.json", path);
      s = add_file(st, buf);
    }
  } else if (ends_with(path, ".json")) {
    s = open_index(st, path);
  } else {
    s = add_file(st, path);
  }
  if (s == DRL_OK) {
    qsort(st->tensors, (size_t)st->count, sizeof *st->tensors, by_name);
    for (int i = 1; i < st->count && s == DRL_OK; ++i)
      if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0)
        s = DRL_FAIL(DRL_ERR_FORMAT, "%s: tensor \"%s\" is in %s and in %s", path, st->tensors[i].name,
                     st->files[st->tensors[i - 1].file].path, st->files[st->tensors[i].file].path);
  }
  if (s != DRL_OK) drl_st_close(st);
  return s;
}

const drl_st_tensor *drl_st_find(const drl_safetensors *st, const char *name) {
  drl_st_tensor key;
  key.name = (char *)name;
  return (const drl_st_tensor *)bsearch(&key, st->tensors, (size_t)st->count, sizeof key, by_name);
}

/* Hands the whole pages of [p, p + n) of a read-only file mapping back to the kernel: a later read refaults them from
 * the file, and a model loads with the fp32 parameters resident, not the file as well. */
static void drop_pages(const unsigned char *p, size_t n) {
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) return;
  uintptr_t lo = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1), hi = ((uintptr_t)p + n) & ~((uintptr_t)page - 1);
  if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

drl_status drl_st_read_f32(const drl_safetensors *st, const drl_st_tensor *t, float *out) {
  const drl_st_file *f = &st->files[t->file];
  const unsigned char *src = f->map + f->data_start + t->begin;
  const int64_t n = t->numel;
  int f32 = strcmp(t->dtype, "F32") == 0, bf16 = strcmp(t->dtype, "BF16") == 0;
  if (!f32 && !bf16 && strcmp(t->dtype, "F16") != 0)
    return DRL_FAIL(DRL_ERR_UNSUPPORTED, "%s: tensor \"%s\": dtype %s is not supported (dynrl reads F32, BF16 and F16)",
                    f->path, t->name, t->dtype);
  if (f32) {
    memcpy(out, src, (size_t)n * 4);
  } else {
    /* Two bytes at a time through memcpy: the data may sit at any alignment. */
#pragma omp parallel for schedule(static) if (n > (1 << 20))
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      memcpy(&h, src + 2 * i, 2);
      out[i] = bf16 ? drl_bf16_to_f32(h) : drl_f16_to_f32(h);
    }
  }
  drop_pages(src, (size_t)(t->end - t->begin));
  return DRL_OK;
}

/* ---- writing ---- */

static int64_t source_numel(const drl_st_source *s) {
  int64_t n = 1;
  for (int d = 0; d < s->ndim; ++d) n *= s->shape[d];
  return n;
}

static drl_status check_sources(const char *path, const drl_st_source *ts, int n, const char *dtype, int *bytes_per) {
  if (strcmp(dtype, "F32") == 0) *bytes_per = 4;
  else if (strcmp(dtype, "BF16") == 0) *bytes_per = 2;
  else return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: dtype %s: dynrl writes F32 or BF16", path, dtype);
  for (int i = 0; i < n; ++i) {
    if (!ts[i].name || !ts[i].name[0] || strcmp(ts[i].name, "__metadata__") == 0)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: tensor %d has no usable name", path, i);
    if (ts[i].ndim < 0 || ts[i].ndim > DRL_ST_MAX_DIMS)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: tensor \"%s\": %d dimensions", path, ts[i].name, ts[i].ndim);
    for (int d = 0; d < ts[i].ndim; ++d)
      if (ts[i].shape[d] < 0)
        return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: tensor \"%s\": negative dimension", path, ts[i].name);
    if (source_numel(&ts[i]) > 0 && !ts[i].data)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: tensor \"%s\": NULL data", path, ts[i].name);
  }
  return DRL_OK;
}

/* The header, padded with spaces to a multiple of 8 bytes (as the reference writer does). */
static drl_status header_json(const char *path, const drl_st_source *ts, int n, const char *dtype, int bytes_per,
                              char **out, size_t *len) {
  json_t *root = json_object(), *meta = json_object();
  int bad_alloc = !root || !meta || json_object_set_new(meta, "format", json_string("pt")) ||
                  json_object_set_new(root, "__metadata__", meta);
  uint64_t at = 0;
  for (int i = 0; i < n && !bad_alloc; ++i) {
    json_t *e = json_object(), *shape = json_array();
    bad_alloc = !e || !shape;
    for (int d = 0; d < ts[i].ndim && !bad_alloc; ++d)
      bad_alloc = json_array_append_new(shape, json_integer(ts[i].shape[d])) != 0;
    uint64_t bytes = (uint64_t)source_numel(&ts[i]) * (uint64_t)bytes_per;
    bad_alloc = bad_alloc || json_object_set_new(e, "dtype", json_string(dtype)) ||
                json_object_set_new(e, "shape", shape) ||
                json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)at, (json_int_t)(at + bytes))) ||
                json_object_set_new(root, ts[i].name, e);
    at += bytes;
  }
  char *text = bad_alloc ? NULL : json_dumps(root, JSON_COMPACT);
  json_decref(root);
  if (!text) return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for the header (or a duplicate tensor name)", path);
  size_t raw = strlen(text), padded = (raw + 7) / 8 * 8;
  char *buf = (char *)realloc(text, padded + 1);
  if (!buf) {
    free(text);
    return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for the header", path);
  }
  memset(buf + raw, ' ', padded - raw);
  buf[padded] = '\0';
  *out = buf;
  *len = padded;
  return DRL_OK;
}

#define WRITE_CHUNK 65536

drl_status drl_st_write(const char *path, const drl_st_source *ts, int n, const char *dtype) {
  int bytes_per = 0;
  DRL_TRY(check_sources(path, ts, n, dtype, &bytes_per));
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j)
      if (strcmp(ts[i].name, ts[j].name) == 0)
        return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: tensor \"%s\" is given twice", path, ts[i].name);
  char *header = NULL;
  size_t hlen = 0;
  DRL_TRY(header_json(path, ts, n, dtype, bytes_per, &header, &hlen));
  drl_atomic_file a;
  drl_status st = drl_atomic_open(&a, path);
  uint16_t *half = NULL;
  if (st != DRL_OK) goto done;
  uint64_t n64 = hlen;
  DRL_TRY_GOTO(drl_atomic_write(&a, &n64, 8));
  DRL_TRY_GOTO(drl_atomic_write(&a, header, hlen));
  if (bytes_per == 2 && !(half = (uint16_t *)malloc(WRITE_CHUNK * sizeof *half))) {
    st = DRL_FAIL(DRL_ERR_OOM, "%s: out of memory", path);
    goto done;
  }
  for (int i = 0; i < n; ++i) {
    int64_t numel = source_numel(&ts[i]);
    if (bytes_per == 4) {
      DRL_TRY_GOTO(drl_atomic_write(&a, ts[i].data, (size_t)numel * 4));
      continue;
    }
    for (int64_t k = 0; k < numel; k += WRITE_CHUNK) {
      int64_t m = numel - k < WRITE_CHUNK ? numel - k : WRITE_CHUNK;
      for (int64_t j = 0; j < m; ++j) half[j] = drl_f32_to_bf16(ts[i].data[k + j]);
      DRL_TRY_GOTO(drl_atomic_write(&a, half, (size_t)m * 2));
    }
  }
  st = drl_atomic_commit(&a);
done:
  drl_atomic_abort(&a);
  free(half);
  free(header);
  return st;
}

drl_status drl_st_write_model(const char *dir, const drl_st_source *ts, int n, const char *dtype,
                              uint64_t max_shard_bytes, int *shards) {
  int bytes_per = 0;
  DRL_TRY(check_sources(dir, ts, n, dtype, &bytes_per));
  if (max_shard_bytes == 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: a shard size of 0 bytes", dir);
  /* Greedy shards in the given order. */
  int *first = (int *)malloc(((size_t)n + 2) * sizeof *first);
  if (!first) return DRL_FAIL(DRL_ERR_OOM, "%s: out of memory", dir);
  int count = 0;
  uint64_t used = 0, total = 0;
  for (int i = 0; i < n; ++i) {
    uint64_t b = (uint64_t)source_numel(&ts[i]) * (uint64_t)bytes_per;
    if (i == 0 || (used > 0 && used + b > max_shard_bytes)) {
      first[count++] = i;
      used = 0;
    }
    used += b;
    total += b;
  }
  if (n == 0) first[count++] = 0;
  first[count] = n;
  drl_status st = DRL_OK;
  char path[DRL_FILE_PATH_CAP + 64];
  json_t *index = NULL;
  if (count == 1) {
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st = drl_st_write(path, ts, n, dtype);
    goto done;
  }
  json_t *map = json_object();
  index = json_pack("{s{sI}so}", "metadata", "total_size", (json_int_t)total, "weight_map", map);
  if (!index) {
    st = DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for the index", dir);
    goto done;
  }
  for (int s = 0; s < count; ++s) {
    char name[64];
    snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, count);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    DRL_TRY_GOTO(drl_st_write(path, ts + first[s], first[s + 1] - first[s], dtype));
    for (int i = first[s]; i < first[s + 1]; ++i)
      if (json_object_set_new(map, ts[i].name, json_string(name))) {
        st = DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for the index", dir);
        goto done;
      }
  }
  char *text = json_dumps(index, JSON_INDENT(2));
  if (!text) {
    st = DRL_FAIL(DRL_ERR_OOM, "%s: out of memory for the index", dir);
    goto done;
  }
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  drl_atomic_file a;
  st = drl_atomic_open(&a, path);
  if (st == DRL_OK) st = drl_atomic_write(&a, text, strlen(text));
  if (st == DRL_OK) st = drl_atomic_write(&a, "\n", 1);
  if (st == DRL_OK) st = drl_atomic_commit(&a);
  drl_atomic_abort(&a);
  free(text);
done:
  json_decref(index);
  free(first);
  if (st == DRL_OK && shards) *shards = count;
  return st;
}
