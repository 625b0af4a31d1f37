#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DRL_ERROR_CAP 2048

static _Thread_local char drl_error_buf[DRL_ERROR_CAP];

/* Keeps only the file name: messages must not carry build-machine paths. */
static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

drl_status drl_fail(drl_status s, const char *file, int line, const char *fmt, ...) {
  int n = snprintf(drl_error_buf, DRL_ERROR_CAP, "%s:%d: ", base_name(file), line);
  if (n < 0 || n >= DRL_ERROR_CAP) n = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(drl_error_buf + n, DRL_ERROR_CAP - (size_t)n, fmt, ap);
  va_end(ap);
  return s;
}

/* Appends text to buf (holding len bytes) without overflowing cap; returns the new length. */
static size_t append(char *buf, size_t len, size_t cap, const char *text) {
  size_t add = strlen(text);
  if (add > cap - 1 - len) add = cap - 1 - len;
  memcpy(buf + len, text, add);
  buf[len + add] = '\0';
  return len + add;
}

drl_status drl_fail_context(drl_status s, const char *fmt, ...) {
  char prev[DRL_ERROR_CAP];
  memcpy(prev, drl_error_buf, DRL_ERROR_CAP);
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(drl_error_buf, DRL_ERROR_CAP, fmt, ap);
  va_end(ap);
  size_t len = n < 0 ? 0 : (n >= DRL_ERROR_CAP ? DRL_ERROR_CAP - 1 : (size_t)n);
  len = append(drl_error_buf, len, DRL_ERROR_CAP, ": ");
  append(drl_error_buf, len, DRL_ERROR_CAP, prev);
  return s;
}

void drl_clear_error(void) { drl_error_buf[0] = '\0'; }

const char *drl_last_error(void) { return drl_error_buf; }

const char *drl_status_name(drl_status s) {
  switch (s) {
    case DRL_OK: return "DRL_OK";
    case DRL_ERR_INVALID_ARG: return "DRL_ERR_INVALID_ARG";
    case DRL_ERR_CONFIG: return "DRL_ERR_CONFIG";
    case DRL_ERR_IO: return "DRL_ERR_IO";
    case DRL_ERR_FORMAT: return "DRL_ERR_FORMAT";
    case DRL_ERR_OOM: return "DRL_ERR_OOM";
    case DRL_ERR_NO_DEVICE: return "DRL_ERR_NO_DEVICE";
    case DRL_ERR_CUDA: return "DRL_ERR_CUDA";
    case DRL_ERR_MPI: return "DRL_ERR_MPI";
    case DRL_ERR_NCCL: return "DRL_ERR_NCCL";
    case DRL_ERR_NUMERIC: return "DRL_ERR_NUMERIC";
    case DRL_ERR_UNSUPPORTED: return "DRL_ERR_UNSUPPORTED";
    case DRL_ERR_INTERNAL: return "DRL_ERR_INTERNAL";
  }
  return "DRL_ERR_UNKNOWN";
}

const char *drl_version(void) { return DYNRL_VERSION_STRING; }
