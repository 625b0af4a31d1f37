/* Files written atomically: the bytes go to "PATH.tmp.PID"; commit flushes and fsyncs them, renames the temp file onto
 * PATH and fsyncs the directory, so a reader sees the old file or the whole new one, never a part. */
#ifndef DRL_ATOMIC_FILE_H
#define DRL_ATOMIC_FILE_H

#include <stdio.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DRL_FILE_PATH_CAP 4096

typedef struct drl_atomic_file {
  FILE *f;
  char path[DRL_FILE_PATH_CAP];
  char tmp[DRL_FILE_PATH_CAP + 32];
} drl_atomic_file;

/* Creates the temp file for path. */
drl_status drl_atomic_open(drl_atomic_file *a, const char *path);
/* Appends n bytes. */
drl_status drl_atomic_write(drl_atomic_file *a, const void *buf, size_t n);
/* Makes the file path's (fsync, rename, fsync of the directory); the temp file is gone either way. */
drl_status drl_atomic_commit(drl_atomic_file *a);
/* Drops the temp file (safe after a failed open or a commit). */
void drl_atomic_abort(drl_atomic_file *a);

/* The directory part of path ("." when there is none). */
void drl_dir_of(const char *path, char *buf, size_t cap);
/* fsync of path opened with flags (O_RDONLY, or | O_DIRECTORY for a directory, where EINVAL is accepted: some file
 * systems cannot sync one and the rename is atomic all the same); what names the operation in the message. */
drl_status drl_fsync_path(const char *what, const char *path, int flags);

#ifdef __cplusplus
}
#endif
#endif /* DRL_ATOMIC_FILE_H */
