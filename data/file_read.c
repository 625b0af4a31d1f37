#include "file_read.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

drl_status drl_read_file(const char *path, size_t max_bytes, char **text, size_t *len) {
  *text = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return DRL_FAIL(DRL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  char *buf = NULL;
  size_t n = 0, cap = 0;
  drl_status st = DRL_OK;
  /* Read in growing chunks, not by the size fseek reports: a pipe or a file that grows reads right too. */
  for (;;) {
    if (n == cap) {
      if (cap > max_bytes) {
        st = DRL_FAIL(DRL_ERR_FORMAT, "%s: larger than %zu bytes", path, max_bytes);
        break;
      }
      size_t grow = cap ? 2 * cap : 1 << 16;
      char *g = (char *)realloc(buf, grow + 1);
      if (!g) {
        st = DRL_FAIL(DRL_ERR_OOM, "%s: out of memory reading %zu bytes", path, grow);
        break;
      }
      buf = g;
      cap = grow;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (st == DRL_OK && ferror(f)) st = DRL_FAIL(DRL_ERR_IO, "%s: read error", path);
  if (st == DRL_OK && n > max_bytes) st = DRL_FAIL(DRL_ERR_FORMAT, "%s: larger than %zu bytes", path, max_bytes);
  fclose(f);
  if (st != DRL_OK) {
    free(buf);
    return st;
  }
  buf[n] = '\0';
  *text = buf;
  *len = n;
  return DRL_OK;
}

void drl_fnv1a64_hex(const void *bytes, size_t n, char out[17]) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ ((const unsigned char *)bytes)[i]) * 0x100000001b3ull;
  snprintf(out, 17, "%016llx", (unsigned long long)h);
}

int drl_is_dir(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}
