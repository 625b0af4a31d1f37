/* Structure-aware HDF5 inputs: the fuzz input decides, object by object, whether each dataset and attribute a
 * reader expects is written as intended or changed (left out, another type, rank or extent, other values, a huge
 * extent with no data, another storage layout, a group or a dangling link in its place). All-zero input bytes
 * mean "as intended", so a short input gives a valid file and the fuzzer works outward from there. */
#ifndef DRL_FUZZ_H5_H
#define DRL_FUZZ_H5_H

#include <hdf5.h>

#include "data/h5.h"
#include "fuzz.h"

/* Creates path (truncating) for writing; returns the file or H5I_INVALID_HID. */
hid_t fuzz_h5_create(const char *path);

/* Closes the file and every object still open in it. */
void fuzz_h5_close(hid_t file);

/* Writes dataset name (intermediate groups created) of type, rank and shape with data (prod(shape) elements),
 * or a variation of it the input chooses. */
void fuzz_h5_array(hid_t file, fuzz_input *in, const char *name, drl_h5_type type, int rank, const int64_t *shape,
                   const void *data);

/* Writes scalar attribute attr of object obj (a group is created when obj is missing), or a variation. */
void fuzz_h5_attr_int64(hid_t file, fuzz_input *in, const char *obj, const char *attr, int64_t value);
void fuzz_h5_attr_string(hid_t file, fuzz_input *in, const char *obj, const char *attr, const char *value);

#endif /* DRL_FUZZ_H5_H */
