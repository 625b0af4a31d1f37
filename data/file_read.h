/* Reading a whole (small) file into memory, the hash that identifies one, and whether a path is a directory. */
#ifndef DRL_FILE_READ_H
#define DRL_FILE_READ_H

#include <stddef.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* *text = the bytes of path, NUL-terminated (the caller frees it), *len their count. A file larger than max_bytes is
 * DRL_ERR_FORMAT and nothing is allocated for it; every error names the path. */
drl_status drl_read_file(const char *path, size_t max_bytes, char **text, size_t *len);

/* FNV-1a 64 of bytes[0, n) as 16 lowercase hex digits (an identification, not a security hash). */
void drl_fnv1a64_hex(const void *bytes, size_t n, char out[17]);

/* 1 when path names a directory (following links), else 0. */
int drl_is_dir(const char *path);

#ifdef __cplusplus
}
#endif
#endif /* DRL_FILE_READ_H */
