#define _POSIX_C_SOURCE 200809L
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void drl_dir_of(const char *path, char *buf, size_t cap) {
  snprintf(buf, cap, "%s", path);
  char *slash = strrchr(buf, '/');
  if (!slash) snprintf(buf, cap, ".");
  else if (slash == buf) buf[1] = '\0';
  else *slash = '\0';
}

drl_status drl_fsync_path(const char *what, const char *path, int flags) {
  int fd = open(path, flags);
  if (fd < 0) return DRL_FAIL(DRL_ERR_IO, "%s: cannot open %s for fsync: %s", what, path, strerror(errno));
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  if (rc != 0 && !(err == EINVAL && (flags & O_DIRECTORY)))
    return DRL_FAIL(DRL_ERR_IO, "%s: fsync of %s failed: %s", what, path, strerror(err));
  return DRL_OK;
}

drl_status drl_atomic_open(drl_atomic_file *a, const char *path) {
  memset(a, 0, sizeof *a);
  if (!path || !path[0]) return DRL_FAIL(DRL_ERR_INVALID_ARG, "empty output path");
  if (strlen(path) >= sizeof a->path) return DRL_FAIL(DRL_ERR_INVALID_ARG, "output path too long: %.64s...", path);
  snprintf(a->path, sizeof a->path, "%s", path);
  snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%ld", path, (long)getpid());
  a->f = fopen(a->tmp, "wb");
  if (!a->f) {
    drl_status st = DRL_FAIL(DRL_ERR_IO, "%s: cannot create %s: %s", path, a->tmp, strerror(errno));
    a->tmp[0] = '\0';
    return st;
  }
  return DRL_OK;
}

drl_status drl_atomic_write(drl_atomic_file *a, const void *buf, size_t n) {
  if (n && fwrite(buf, 1, n, a->f) != n)
    return DRL_FAIL(DRL_ERR_IO, "%s: write to %s failed: %s", a->path, a->tmp, strerror(errno));
  return DRL_OK;
}

drl_status drl_atomic_commit(drl_atomic_file *a) {
  drl_status st = DRL_OK;
  int rc = fflush(a->f);
  int err = errno;
  rc |= fclose(a->f);
  a->f = NULL;
  if (rc != 0) {
    st = DRL_FAIL(DRL_ERR_IO, "%s: closing %s failed: %s", a->path, a->tmp, strerror(err ? err : errno));
    goto done;
  }
  DRL_TRY_GOTO(drl_fsync_path(a->path, a->tmp, O_RDONLY));
  if (rename(a->tmp, a->path) != 0) {
    st = DRL_FAIL(DRL_ERR_IO, "%s: rename from %s failed: %s", a->path, a->tmp, strerror(errno));
    goto done;
  }
  a->tmp[0] = '\0';
  char dir[DRL_FILE_PATH_CAP];
  drl_dir_of(a->path, dir, sizeof dir);
  st = drl_fsync_path(a->path, dir, O_RDONLY | O_DIRECTORY);
done:
  drl_atomic_abort(a);
  return st;
}

void drl_atomic_abort(drl_atomic_file *a) {
  if (a->f) fclose(a->f);
  a->f = NULL;
  if (a->tmp[0]) unlink(a->tmp);
  a->tmp[0] = '\0';
}
