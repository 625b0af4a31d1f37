/* Writers of structure-aware HDF5 fuzz inputs (see fuzz_h5.h). HDF5 failures here only make a less interesting
 * file: they are cleared, not reported. */
#include "fuzz_h5.h"

#include <string.h>

/* Most elements written for a changed extent (keeps each input's file small and fast). */
#define MAX_WRITTEN 4096

hid_t fuzz_h5_create(const char *path) {
  drl_h5_quiet();
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  H5Eclear2(H5E_DEFAULT);
  return f;
}

void fuzz_h5_close(hid_t file) {
  if (file >= 0) H5Fclose(file);
  H5Eclear2(H5E_DEFAULT);
}

static hid_t make_lcpl(void) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  return lcpl;
}

/* A datatype the input picks among the reader's types and ones it must refuse; the caller closes it. */
static hid_t pick_type(fuzz_input *in, size_t *esize) {
  uint8_t k = fuzz_u8(in) % 10;
  hid_t t;
  switch (k) {
    case 0: t = H5Tcopy(H5T_STD_I32LE); break;
    case 1: t = H5Tcopy(H5T_STD_I64LE); break;
    case 2: t = H5Tcopy(H5T_STD_U8LE); break;
    case 3: t = H5Tcopy(H5T_STD_U64LE); break;
    case 4: t = H5Tcopy(H5T_IEEE_F32LE); break;
    case 5: t = H5Tcopy(H5T_IEEE_F64LE); break;
    case 6: t = H5Tcopy(H5T_STD_I16BE); break;
    case 7: t = H5Tcopy(H5T_STD_I64BE); break;
    case 8:
      t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, 1 + fuzz_u8(in) % 8);
      break;
    default:
      t = H5Tcreate(H5T_COMPOUND, 8);
      H5Tinsert(t, "a", 0, H5T_NATIVE_INT32);
      H5Tinsert(t, "b", 4, H5T_NATIVE_INT32);
      break;
  }
  *esize = H5Tget_size(t);
  return t;
}

/* Creates the dataset and writes buf (count elements of esize bytes, or no write when buf is NULL). */
static void create_dataset(hid_t file, const char *name, hid_t ftype, int rank, const hsize_t *dims,
                           const hsize_t *maxdims, int layout, const void *buf) {
  hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, maxdims);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), lcpl = make_lcpl();
  hsize_t chunk[DRL_H5_MAX_RANK + 1];
  for (int i = 0; i < rank; ++i) chunk[i] = dims[i] > 0 && dims[i] < 64 ? dims[i] : 64;
  if (layout == 1 && rank > 0) {
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_fletcher32(dcpl);
  } else if (layout == 2) {
    H5Pset_layout(dcpl, H5D_CONTIGUOUS);
  } else if (layout == 3 && rank > 0) {
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_deflate(dcpl, 1);
  } else if (layout == 0) {
    H5Pset_layout(dcpl, H5D_COMPACT);
  }
  hid_t d = H5Dcreate2(file, name, ftype, space, lcpl, dcpl, H5P_DEFAULT);
  if (d < 0 && layout == 0) { /* too large for the object header: contiguous instead */
    H5Eclear2(H5E_DEFAULT);
    H5Pset_layout(dcpl, H5D_CONTIGUOUS);
    d = H5Dcreate2(file, name, ftype, space, lcpl, dcpl, H5P_DEFAULT);
  }
  if (d >= 0 && buf) H5Dwrite(d, ftype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  if (d >= 0) H5Dclose(d);
  H5Pclose(lcpl);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Eclear2(H5E_DEFAULT);
}

void fuzz_h5_array(hid_t file, fuzz_input *in, const char *name, drl_h5_type type, int rank, const int64_t *shape,
                   const void *data) {
  hsize_t dims[DRL_H5_MAX_RANK + 1], maxdims[DRL_H5_MAX_RANK + 1];
  size_t count = 1;
  for (int i = 0; i < rank; ++i) count *= (size_t)(dims[i] = (hsize_t)shape[i]);
  hid_t ftype = H5Tcopy(drl_h5_file_type(type));
  size_t esize = H5Tget_size(ftype);
  uint8_t mode = fuzz_u8(in) % 13;
  void *own = NULL;
  const void *buf = data;
  int layout = 0;
  switch (mode) {
    case 0: break;                          /* as intended */
    case 1: goto done;                      /* left out */
    case 2: layout = 1; break;              /* chunked with Fletcher-32, like large arrays */
    case 3: layout = 2; break;              /* contiguous */
    case 4: layout = 3; break;              /* deflate-compressed chunks */
    case 5:                                 /* another element type, the values taken from the input */
      H5Tclose(ftype);
      ftype = pick_type(in, &esize);
      buf = NULL;
      break;
    case 6:                                 /* another rank */
      rank = (rank + 1 + fuzz_u8(in) % 2) % 3;
      count = 1;
      for (int i = 0; i < rank; ++i) count *= (size_t)(dims[i] = 1 + fuzz_u8(in) % 4);
      buf = NULL;
      break;
    case 7:                                 /* another extent along the first dimension */
      if (rank == 0) break;
      {
        int64_t d0 = (int64_t)dims[0] + (int8_t)fuzz_u8(in);
        dims[0] = d0 < 0 ? 0 : d0 > MAX_WRITTEN ? MAX_WRITTEN : (hsize_t)d0;
      }
      count = 1;
      for (int i = 0; i < rank; ++i) count *= (size_t)dims[i];
      buf = NULL;
      break;
    case 8:                                 /* other values: raw bytes of the input */
      buf = NULL;
      break;
    case 9: {                               /* a huge extent, nothing written (chunks read back as fill values) */
      if (rank == 0) break;
      dims[0] = (hsize_t)1 << (fuzz_u8(in) % 40);
      maxdims[0] = H5S_UNLIMITED;
      for (int i = 1; i < rank; ++i) maxdims[i] = dims[i];
      hsize_t chunk[DRL_H5_MAX_RANK];
      for (int i = 0; i < rank; ++i) chunk[i] = 64;
      hid_t space = H5Screate_simple(rank, dims, maxdims);
      hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), lcpl = make_lcpl();
      H5Pset_chunk(dcpl, rank, chunk);
      hid_t d = H5Dcreate2(file, name, ftype, space, lcpl, dcpl, H5P_DEFAULT);
      if (d >= 0) H5Dclose(d);
      H5Pclose(lcpl);
      H5Pclose(dcpl);
      H5Sclose(space);
      H5Eclear2(H5E_DEFAULT);
      goto done;
    }
    case 10: {                              /* a group in its place */
      hid_t lcpl = make_lcpl();
      hid_t g = H5Gcreate2(file, name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
      if (g >= 0) H5Gclose(g);
      H5Pclose(lcpl);
      H5Eclear2(H5E_DEFAULT);
      goto done;
    }
    case 11: {                              /* a dangling soft link in its place */
      hid_t lcpl = make_lcpl();
      H5Lcreate_soft("/nowhere", file, name, lcpl, H5P_DEFAULT);
      H5Pclose(lcpl);
      H5Eclear2(H5E_DEFAULT);
      goto done;
    }
    default:                                /* extendible (unlimited maximum extent), chunked */
      for (int i = 0; i < rank; ++i) maxdims[i] = H5S_UNLIMITED;
      layout = 1;
      create_dataset(file, name, ftype, rank, dims, rank > 0 ? maxdims : NULL, layout, data);
      goto done;
  }
  if (count > MAX_WRITTEN && !buf) count = 0, dims[0] = 0;
  if (!buf) {
    own = calloc(count ? count : 1, esize);
    if (!own) goto done;
    fuzz_bytes(in, own, count * esize);
    /* Fixed-length strings and compounds: any bytes are valid values. */
    buf = own;
  }
  create_dataset(file, name, ftype, rank, dims, NULL, layout, count ? buf : NULL);
done:
  free(own);
  H5Tclose(ftype);
  H5Eclear2(H5E_DEFAULT);
}

/* Opens obj, creating it as a group when it does not exist; returns the object or H5I_INVALID_HID. */
static hid_t open_or_create(hid_t file, const char *obj) {
  if (strcmp(obj, "/") != 0 && H5Lexists(file, obj, H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    hid_t lcpl = make_lcpl();
    hid_t g = H5Gcreate2(file, obj, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    if (g >= 0) H5Gclose(g);
    H5Eclear2(H5E_DEFAULT);
  }
  hid_t o = H5Oopen(file, obj, H5P_DEFAULT);
  H5Eclear2(H5E_DEFAULT);
  return o;
}

static void put_attr(hid_t o, const char *attr, hid_t ftype, hid_t space, const void *value) {
  if (H5Aexists(o, attr) > 0) H5Adelete(o, attr);
  hid_t a = H5Acreate2(o, attr, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a >= 0 && value) H5Awrite(a, ftype, value);
  if (a >= 0) H5Aclose(a);
  H5Eclear2(H5E_DEFAULT);
}

/* The variations both attribute kinds share; returns 1 when it wrote one (or chose to write nothing). */
static int attr_variation(hid_t o, fuzz_input *in, const char *attr, uint8_t mode) {
  switch (mode) {
    case 1: return 1; /* left out */
    case 2: {         /* another type, the value from the input */
      size_t esize;
      hid_t t = pick_type(in, &esize);
      hid_t space = H5Screate(H5S_SCALAR);
      uint8_t v[16] = {0};
      fuzz_bytes(in, v, esize < sizeof v ? esize : sizeof v);
      put_attr(o, attr, t, space, esize <= sizeof v ? v : NULL);
      H5Sclose(space);
      H5Tclose(t);
      return 1;
    }
    case 3: { /* more than one value */
      hsize_t n = fuzz_u8(in) % 3 == 0 ? 0 : 2;
      hid_t space = H5Screate_simple(1, &n, NULL);
      int64_t v[2] = {1, 1};
      put_attr(o, attr, H5T_STD_I64LE, space, n ? v : NULL);
      H5Sclose(space);
      return 1;
    }
    case 4: { /* a null dataspace */
      hid_t space = H5Screate(H5S_NULL);
      put_attr(o, attr, H5T_STD_I64LE, space, NULL);
      H5Sclose(space);
      return 1;
    }
  }
  return 0;
}

void fuzz_h5_attr_int64(hid_t file, fuzz_input *in, const char *obj, const char *attr, int64_t value) {
  hid_t o = open_or_create(file, obj);
  if (o < 0) return;
  uint8_t mode = fuzz_u8(in) % 8;
  if (!attr_variation(o, in, attr, mode)) {
    if (mode == 5) value = (int64_t)fuzz_u64(in);
    if (mode == 6) value += (int8_t)fuzz_u8(in);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t t = mode == 7 ? H5T_STD_I32BE : H5T_STD_I64LE; /* another integer width and byte order */
    int32_t v32 = (int32_t)value;
    put_attr(o, attr, t, space, mode == 7 ? (const void *)&v32 : (const void *)&value);
    H5Sclose(space);
  }
  H5Oclose(o);
  H5Eclear2(H5E_DEFAULT);
}

void fuzz_h5_attr_string(hid_t file, fuzz_input *in, const char *obj, const char *attr, const char *value) {
  hid_t o = open_or_create(file, obj);
  if (o < 0) return;
  uint8_t mode = fuzz_u8(in) % 9;
  if (!attr_variation(o, in, attr, mode)) {
    char text[400];
    size_t len = strlen(value);
    if (len >= sizeof text) len = sizeof text - 1;
    memcpy(text, value, len);
    if (mode == 5 || mode == 6) { /* other bytes (NULs, repeats, non-ASCII), up to past the readers' capacities */
      len = fuzz_u8(in);
      if (mode == 6) len += 256;
      if (len >= sizeof text) len = sizeof text - 1;
      fuzz_bytes(in, text, len);
    }
    text[len] = '\0';
    hid_t t = H5Tcopy(H5T_C_S1);
    if (mode == 7) {
      H5Tset_size(t, H5T_VARIABLE);
    } else {
      H5Tset_size(t, len + 1);
      if (mode == 8) { /* space-padded, no terminator */
        H5Tset_size(t, len ? len : 1);
        H5Tset_strpad(t, H5T_STR_SPACEPAD);
      }
    }
    hid_t space = H5Screate(H5S_SCALAR);
    const char *ptr = text;
    put_attr(o, attr, t, space, mode == 7 ? (const void *)&ptr : (const void *)text);
    H5Sclose(space);
    H5Tclose(t);
  }
  H5Oclose(o);
  H5Eclear2(H5E_DEFAULT);
}
