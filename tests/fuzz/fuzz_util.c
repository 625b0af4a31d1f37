/* The temporary directory of the fuzz targets and the replay driver used when libFuzzer is not linked. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char temp_dir[256];
static char temp_paths[8][512]; /* the files handed out, removed with the directory */
static int n_temp_paths;

static void remove_temp_dir(void) {
  for (int i = 0; i < n_temp_paths; ++i) unlink(temp_paths[i]);
  rmdir(temp_dir);
}

const char *fuzz_temp_path(const char *name) {
  static char path[512];
  if (!temp_dir[0]) {
    const char *base = getenv("TMPDIR");
    snprintf(temp_dir, sizeof temp_dir, "%s/dynrl-fuzz-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(temp_dir)) {
      fprintf(stderr, "fuzz: cannot create a temporary directory in %s: %s\n", base ? base : "/tmp", strerror(errno));
      abort();
    }
    atexit(remove_temp_dir);
  }
  if (snprintf(path, sizeof path, "%s/%s", temp_dir, name) >= (int)sizeof path) abort();
  int known = 0;
  for (int i = 0; i < n_temp_paths; ++i) known |= strcmp(temp_paths[i], path) == 0;
  if (!known && n_temp_paths < 8) memcpy(temp_paths[n_temp_paths++], path, sizeof path);
  return path;
}

void fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
    fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
    abort();
  }
}

#ifndef DRL_FUZZ_LIBFUZZER
/* Replay: feeds every file of the given files and directories to the target once; fails when one is missing or
 * nothing was replayed, so a mistyped corpus path cannot pass silently. */
static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = (uint8_t *)malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) buf = (uint8_t *)realloc(buf, cap *= 2);
  }
  fclose(f);
  if (!buf) {
    fprintf(stderr, "replay: out of memory reading %s\n", path);
    return -1;
  }
  fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
  LLVMFuzzerTestOneInput(buf, n);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  int replayed = 0;
  for (int a = 1; a < argc; ++a) {
    struct stat sb;
    if (stat(argv[a], &sb) != 0) {
      fprintf(stderr, "replay: %s: %s\n", argv[a], strerror(errno));
      return 1;
    }
    if (!S_ISDIR(sb.st_mode)) {
      if (replay_file(argv[a]) != 0) return 1;
      ++replayed;
      continue;
    }
    DIR *d = opendir(argv[a]);
    if (!d) {
      fprintf(stderr, "replay: %s: %s\n", argv[a], strerror(errno));
      return 1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[a], e->d_name);
      if (replay_file(path) != 0) {
        closedir(d);
        return 1;
      }
      ++replayed;
    }
    closedir(d);
  }
  if (replayed == 0) {
    fprintf(stderr, "replay: no inputs\n");
    return 1;
  }
  printf("replayed %d inputs\n", replayed);
  return 0;
}
#endif
