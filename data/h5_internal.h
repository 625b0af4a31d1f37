/* What data/h5.c shares with data/h5_write.c: argument checks and object helpers of the HDF5 layer. */
#ifndef DRL_H5_INTERNAL_H
#define DRL_H5_INTERNAL_H

#include "data/h5.h"

/* An HDF5 id that is open. */
static inline int drl_h5_is_open(hid_t id) { return id > 0; }

/* Whether t is one of drl_h5_type's values. */
int drl_h5_type_valid(drl_h5_type t);

/* The native (in-memory) HDF5 type of t. */
hid_t drl_h5_mem_type(drl_h5_type t);

/* DRL_OK when f is open. */
drl_status drl_h5_check_file(const drl_h5_file *f);

/* Object names are absolute or relative to the root, with no empty components ("a//b", "a/"), so that each prefix
 * names a real link; what names the object's role in the message. */
drl_status drl_h5_check_name(const drl_h5_file *f, const char *name, const char *what);

/* Element count of a shape into *count; fails on negative dimensions or overflow of int64 bytes. */
drl_status drl_h5_shape_count(const drl_h5_file *f, const char *name, int rank, const int64_t *shape, size_t esize,
                              int64_t *count);

/* Whether the object name exists in f (every prefix a link). */
drl_status drl_h5_exists_in(const drl_h5_file *f, const char *name, int *exists);

/* Group creation properties that leave out timestamps: the same content gives the same file bytes. */
hid_t drl_h5_untimed_plist(hid_t cls);

/* Creates the groups of every prefix of name that does not exist yet; the last component too when include_last. */
drl_status drl_h5_make_groups(drl_h5_file *f, const char *name, int include_last);

#endif /* DRL_H5_INTERNAL_H */
